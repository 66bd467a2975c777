{#-
  The feature spec of the source being built arrives as vars (`FeatureSpec.dbt_vars()` in
  reclake/feature_spec.py; defaults in dbt_project.yml are the synthetic source's). Every
  model reads it through `feature_spec()`, which validates it once per node and returns
  the shapes the SQL loops over.
-#}

{% macro canonical_columns() %}
    {#- Returns the bronze columns every source has, in bronze order, as
        `{name: sql_type}`: the var `canonical_columns`, which the pipeline passes from
        the one declaration of the event contract (reclake/contracts.py). Ids, labels and
        prices a source lacks are null. -#}
    {{ return(var('canonical_columns')) }}
{% endmacro %}


{% macro feature_spec() %}
    {#- Returns the validated spec vars as a dict:
        `source`; `feature_columns` (list of `{name, sql_type, role}`, spec order);
        `extra_columns` (the feature columns that are not canonical bronze columns);
        `role_columns` (`{'user': [...], 'item': [...]}`, from `user_columns` /
        `item_columns`); `entities` (`user` and/or `item`: the ids the source has);
        `has_history` (both ids: the `user_history` list exists); `label_column`;
        `label_columns`; `positive_threshold`; `windows_days` (ascending, distinct);
        `horizon_days` (the longest window); `history_length`; `rate_prior`;
        `rate_prior_weight`. Raises a compiler error naming the var that is wrong. -#}
    {%- set canonical = canonical_columns() -%}
    {%- set identifier = '^[a-z_][a-z0-9_]*$' -%}

    {%- set source_name = var('source') | string -%}
    {%- if not modules.re.match(identifier, source_name) -%}
        {{ exceptions.raise_compiler_error("var 'source' must be a lowercase identifier, got '" ~ source_name ~ "'") }}
    {%- endif -%}

    {%- set feature_columns = [] -%}
    {%- for column in var('feature_columns') -%}
        {%- if column is not mapping or 'name' not in column or 'sql_type' not in column -%}
            {{ exceptions.raise_compiler_error(
                "var 'feature_columns' entries need 'name' and 'sql_type', got '" ~ column ~ "'") }}
        {%- endif -%}
        {%- if not modules.re.match(identifier, column['name'] | string) -%}
            {{ exceptions.raise_compiler_error(
                "var 'feature_columns': column name must be a lowercase identifier, got '" ~ column['name'] ~ "'") }}
        {%- endif -%}
        {%- if column['sql_type'] not in ['bigint', 'double', 'string'] -%}
            {{ exceptions.raise_compiler_error(
                "var 'feature_columns': column '" ~ column['name'] ~ "' has sql_type '" ~ column['sql_type']
                ~ "'; expected bigint, double or string") }}
        {%- endif -%}
        {%- if column['name'] in ['event_date', 'hour_of_day', 'day_of_week', 'label', 'is_positive'] -%}
            {{ exceptions.raise_compiler_error(
                "var 'feature_columns': '" ~ column['name'] ~ "' is derived by dbt, not a bronze column") }}
        {%- endif -%}
        {%- do feature_columns.append({
            'name': column['name'],
            'sql_type': canonical.get(column['name'], column['sql_type']),
            'role': column.get('role', 'context'),
        }) -%}
    {%- endfor -%}
    {%- set feature_names = feature_columns | map(attribute='name') | list -%}
    {%- if feature_names | length != feature_names | unique | list | length -%}
        {{ exceptions.raise_compiler_error("var 'feature_columns' names a column twice: " ~ feature_names) }}
    {%- endif -%}
    {%- set bronze_names = (canonical.keys() | list) + feature_names -%}

    {%- set role_columns = {} -%}
    {%- for entity in ['user', 'item'] -%}
        {%- set names = var(entity ~ '_columns') | list -%}
        {%- for name in names if name not in feature_names -%}
            {{ exceptions.raise_compiler_error(
                "var '" ~ entity ~ "_columns' names '" ~ name ~ "', which is not in var 'feature_columns'") }}
        {%- endfor -%}
        {%- do role_columns.update({entity: names}) -%}
    {%- endfor -%}

    {%- set entities = [] -%}
    {%- for entity in ['user', 'item'] -%}
        {%- set flag = var('has_' ~ entity ~ '_id') -%}
        {%- if flag not in [true, false] -%}
            {{ exceptions.raise_compiler_error("var 'has_" ~ entity ~ "_id' must be true or false, got '" ~ flag ~ "'") }}
        {%- endif -%}
        {%- if flag -%}{%- do entities.append(entity) -%}{%- endif -%}
    {%- endfor -%}

    {%- set label_column = var('label_column') | string -%}
    {%- set label_columns = var('label_columns') | list -%}
    {%- if label_column not in label_columns -%}
        {{ exceptions.raise_compiler_error(
            "var 'label_columns' (" ~ label_columns ~ ") must include var 'label_column' ('" ~ label_column ~ "')") }}
    {%- endif -%}
    {%- for name in label_columns if name not in bronze_names -%}
        {{ exceptions.raise_compiler_error(
            "var 'label_columns': '" ~ name ~ "' is neither a canonical bronze column nor in var 'feature_columns'") }}
    {%- endfor -%}

    {%- set positive_threshold = var('positive_threshold') -%}
    {%- if positive_threshold is not number -%}
        {{ exceptions.raise_compiler_error("var 'positive_threshold' must be a number, got '" ~ positive_threshold ~ "'") }}
    {%- endif -%}

    {%- set windows_days = var('windows_days') | list -%}
    {%- for days in windows_days if days is not number or days != days | int or days < 1 -%}
        {{ exceptions.raise_compiler_error(
            "var 'windows_days' must hold whole numbers of days >= 1, got " ~ windows_days) }}
    {%- endfor -%}
    {%- if not windows_days -%}
        {{ exceptions.raise_compiler_error("var 'windows_days' must name at least one window") }}
    {%- endif -%}
    {%- set windows_days = windows_days | map('int') | unique | sort | list -%}

    {%- set history_length = var('history_length') -%}
    {%- if history_length is not number or history_length != history_length | int or history_length < 1 -%}
        {{ exceptions.raise_compiler_error("var 'history_length' must be a whole number >= 1, got '" ~ history_length ~ "'") }}
    {%- endif -%}

    {%- set rate_prior = var('rate_prior') -%}
    {%- set rate_prior_weight = var('rate_prior_weight') -%}
    {%- if rate_prior is not number or rate_prior < 0 or rate_prior > 1 -%}
        {{ exceptions.raise_compiler_error("var 'rate_prior' must be a number in [0, 1], got '" ~ rate_prior ~ "'") }}
    {%- endif -%}
    {%- if rate_prior_weight is not number or rate_prior_weight <= 0 -%}
        {{ exceptions.raise_compiler_error("var 'rate_prior_weight' must be a number > 0, got '" ~ rate_prior_weight ~ "'") }}
    {%- endif -%}

    {{ return({
        'source': source_name,
        'feature_columns': feature_columns,
        'extra_columns': feature_columns | rejectattr('name', 'in', canonical.keys() | list) | list,
        'role_columns': role_columns,
        'entities': entities,
        'has_history': entities | length == 2,
        'label_column': label_column,
        'label_columns': label_columns,
        'positive_threshold': positive_threshold,
        'windows_days': windows_days,
        'horizon_days': windows_days | max,
        'history_length': history_length | int,
        'rate_prior': rate_prior,
        'rate_prior_weight': rate_prior_weight,
    }) }}
{% endmacro %}


{% macro aggregate_columns(entity) %}
    {#- Returns the names of the point-in-time aggregates of `entity` in table order: per
        window `<entity>_events_<w>d`, `<entity>_positives_<w>d`,
        `<entity>_positive_rate_<w>d` (the order of `FeatureSpec.aggregate_columns`). -#}
    {%- set names = [] -%}
    {%- for days in feature_spec()['windows_days'] -%}
        {%- do names.extend([
            entity ~ '_events_' ~ days ~ 'd',
            entity ~ '_positives_' ~ days ~ 'd',
            entity ~ '_positive_rate_' ~ days ~ 'd',
        ]) -%}
    {%- endfor -%}
    {{ return(names) }}
{% endmacro %}


{% macro positive_rate(positives, events) %}
    {#- Returns the SQL expression of the smoothed positive rate
        `(positives + rate_prior * rate_prior_weight) / (events + rate_prior_weight)`: a
        double in [0, 1] that equals `rate_prior` without events. The only place the
        formula lives. -#}
    {%- set spec = feature_spec() -%}
    (cast({{ positives }} as double) + {{ spec['rate_prior'] * spec['rate_prior_weight'] }})
        / (cast({{ events }} as double) + {{ spec['rate_prior_weight'] }})
{%- endmacro %}
