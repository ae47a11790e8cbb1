"""Golden prompts: DSPy 3.4.1's messages for the cases in ``cases.py`` (see that module)."""
