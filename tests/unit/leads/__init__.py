"""Unit tests of the leads service's pure domain."""
