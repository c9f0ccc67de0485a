"""Applications of distilled data, measured by their standard protocols, on top of the public
API: any registered method or selector can be plugged in."""

from ddkit.apps.continual import ContinualResult, class_orders, class_subset, continual_learning

__all__ = ["ContinualResult", "class_orders", "class_subset", "continual_learning"]
