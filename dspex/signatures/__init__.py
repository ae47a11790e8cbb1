"""Signatures: the typed inputs, outputs and instructions of a predictor."""

from dspex.signatures._field import Field, InputField, OutputField
from dspex.signatures._signature import Signature, ensure_signature, make_signature

__all__ = ["Field", "InputField", "OutputField", "Signature", "ensure_signature", "make_signature"]
