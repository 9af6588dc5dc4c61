"""Small pure helpers over Python's ast shared by the script parser and the workloads reader
(python_parser imports workloads' hook, so the helpers live below both)."""
from __future__ import annotations

import ast


def dotted(node: ast.AST) -> str:
    """'torch.cuda.is_bf16_supported' for an Attribute/Name chain, '' otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    if isinstance(node, ast.Call):   # FastLanguageModel.from_pretrained(...).to(...) etc.
        inner = dotted(node.func)
        return (inner + "()." + ".".join(reversed(parts))) if inner else ""
    return ""
