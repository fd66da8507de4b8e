"""cpr-edge: component-aware pruning of TD-MPC controllers for microcontrollers."""

__version__ = "0.1.0"
