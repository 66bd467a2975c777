"""The monitoring loop's thresholds: when a day's drift or calibration is an alert."""

from typing import Any, ClassVar

import dagster as dg


class MonitoringResource(dg.ConfigurableResource):
    """Alert thresholds the monitoring checks and ``drift_retrain_sensor`` share
    (defaults and meaning: ``reclake.settings.Settings``).

    Attributes:
        retrain_policy: ``daily`` or ``on_drift``.
        drift_alert_share: share of monitored feature columns drifted.
        calibration_alert_ece: expected calibration error over score deciles.
        calibration_alert_ratio: largest ``|predicted / observed - 1|``.
        prediction_drift_alert: normed Wasserstein distance of the served scores.
    """

    # The figures of ``served_model_quality`` each WARN check judges (metadata keys).
    CALIBRATION_FIGURES: ClassVar[tuple[str, ...]] = ("ece", "ece_noise", "ratio", "ratio_noise")
    PREDICTION_FIGURES: ClassVar[tuple[str, ...]] = ("prediction_drift",)

    retrain_policy: str = "daily"
    drift_alert_share: float = 0.3
    calibration_alert_ece: float = 0.01
    calibration_alert_ratio: float = 0.15
    prediction_drift_alert: float = 0.1

    def feature_drift_alerts(self, drifted_share: float | None) -> list[str]:
        """Why a day's feature drift is an alert (empty: it is not)."""
        if drifted_share is not None and drifted_share >= self.drift_alert_share:
            return [f"{drifted_share:.0%} of the monitored features drifted (alert from {self.drift_alert_share:.0%})"]
        return []

    def served_model_alerts(self, figures: dict[str, float]) -> list[str]:
        """Why the served model's figures of a day (``ServedModelQuality.figures``) are an
        alert: calibration error, the predicted/observed ratio, prediction drift.

        The calibration thresholds apply on top of twice the day's sampling noise
        (``ece_noise``, ``ratio_noise``: what a perfectly calibrated model would show on
        as many rows), so a small day does not alert on noise alone."""
        alerts = []
        ece, ratio, drift = figures.get("ece"), figures.get("ratio"), figures.get("prediction_drift")
        ece_limit = self.calibration_alert_ece + 2 * (figures.get("ece_noise") or 0.0)
        ratio_limit = self.calibration_alert_ratio + 2 * (figures.get("ratio_noise") or 0.0)
        if ece is not None and ece >= ece_limit:
            alerts.append(f"calibration error {ece:.4f} (alert from {ece_limit:.4f})")
        if ratio is not None and abs(ratio - 1) >= ratio_limit:
            alerts.append(f"predicted/observed {ratio:.3f} (alert beyond 1 ± {ratio_limit:.3f})")
        if drift is not None and drift >= self.prediction_drift_alert:
            alerts.append(f"prediction drift {drift:.3f} (alert from {self.prediction_drift_alert})")
        return alerts

    def day_alerts(self, asset: str, metadata: dict[str, Any]) -> list[str]:
        """The alerts one day's materialization of ``drift_report`` or
        ``served_model_quality`` raises (its metadata values); empty when it raises none or
        the day was not reported / judged."""
        if asset == "drift_report":
            return (
                self.feature_drift_alerts(metadata.get("drifted_share")) if metadata.get("status") == "reported" else []
            )
        if metadata.get("status") != "judged":
            return []
        keys = self.CALIBRATION_FIGURES + self.PREDICTION_FIGURES
        return self.served_model_alerts({key: metadata[key] for key in keys if metadata.get(key) is not None})
