"""A toy method family defined by the tests (see tests/plugins/README.md)."""
