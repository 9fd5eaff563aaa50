"""Test helpers: tiny random models in every layout the loaders accept."""
