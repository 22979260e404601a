"""Interop tests: p2prpc against the real JavaScript P2PT (node, Chromium) and its tracker."""
