"""Tests of the blendshape_fit package."""
