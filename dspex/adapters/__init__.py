"""Adapters turn signatures into prompts and LM answers back into typed fields."""

from dspex.adapters._base import Adapter
from dspex.adapters._chat import ChatAdapter
from dspex.adapters._code import Code
from dspex.adapters._image import Image
from dspex.adapters._json import JSONAdapter
from dspex.adapters._types import History, ToolCalls

__all__ = ["Adapter", "ChatAdapter", "Code", "History", "Image", "JSONAdapter", "ToolCalls"]
