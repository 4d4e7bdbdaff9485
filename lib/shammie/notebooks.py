"""Reading notebooks without running them: find them, and parse the `parameters` cell into typed names.

The parameters cell holds only literal assignments, each with a comment that starts with its type:
`epochs = None  # int: training epochs`. The type (`int`, `float`, `str`, `bool`, `list`, `tuple`,
`dict`, alternatives joined by `|`) is what the runner checks a `-p name=value` against; a `None`
default also admits None ("take the profile's value"). Without a type the default's type is used.
"""

from __future__ import annotations

import ast
import builtins
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat

from .core import ShammieError, repo_root

__all__ = ["Parameter", "strip_notebook", "find_notebooks", "parameters_cell", "read_parameters", "check_value",
           "parse_assignment", "typed_numbers"]

REQUIRED_PARAMETERS = ("profile", "seed", "device", "out_dir")


@dataclass(frozen=True)
class Parameter:
    """One name of a notebook's parameters cell: its default, its annotation (source text) and comment."""

    name: str
    default: Any
    annotation: str | None
    comment: str = ""


def find_notebooks(folder: Path | None = None) -> list[Path]:
    """The workbook's notebooks (`notebooks/*.ipynb`, sorted), skipping checkpoints and hidden files."""
    folder = Path(folder) if folder else repo_root() / "notebooks"
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith((".", "_")))


def parameters_cell(nb) -> int:
    """Index of the single code cell tagged `parameters`; a clear error when there is none or several."""
    idx = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(idx) != 1:
        raise ShammieError(f"a notebook needs exactly one code cell tagged 'parameters'; found {len(idx)}")
    return idx[0]


def read_parameters(path: Path) -> dict[str, Parameter]:
    """Parse the parameters cell of the notebook at `path` into {name: Parameter}, in order."""
    path = Path(path)
    if not path.exists():
        raise ShammieError(f"notebook not found: {path}")
    nb = nbformat.read(path, as_version=4)
    try:
        cell = nb.cells[parameters_cell(nb)]
    except ShammieError as err:
        raise ShammieError(f"{path.name}: {err}") from None
    source = cell.source
    tree = ast.parse(source)
    lines = source.splitlines()
    params: dict[str, Parameter] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value_node, annotation = node.target.id, node.value, ast.unparse(node.annotation)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value_node, annotation = node.targets[0].id, node.value, None
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue  # a docstring-like comment
        else:
            raise ShammieError(f"{path.name}: the parameters cell may hold only `name = literal` lines; "
                               f"line {node.lineno} is `{ast.unparse(node)}`")
        try:
            default = ast.literal_eval(value_node)
        except ValueError:
            raise ShammieError(f"{path.name}: parameter {name!r} must be a literal, got `{ast.unparse(value_node)}`") from None
        line = lines[node.lineno - 1]
        comment = line.split("#", 1)[1].strip() if "#" in line else ""
        if annotation is None:
            m = _TYPE_COMMENT.match(comment)
            if m:
                annotation, comment = m.group(1).strip(), m.group(2).strip()
        if annotation is not None:
            _annotation_types(annotation)  # unsupported types are an error here, not at run time
            if default is None and "None" not in annotation:
                annotation += " | None"
        params[name] = Parameter(name, default, annotation, comment)
    return params


_TYPE_COMMENT = re.compile(r"^((?:int|float|str|bool|list|tuple|dict|None)(?:\[[^\]]*\])?(?:\s*\|\s*(?:int|float|str|bool|list|tuple|dict|None)(?:\[[^\]]*\])?)*)\s*:\s*(.*)$")

_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "list": list, "tuple": tuple, "dict": dict, "None": type(None)}


def _annotation_types(annotation: str) -> list[type]:
    """The plain types an annotation such as `int | None` or `tuple[int, ...] | None` admits."""
    out = []
    for part in annotation.split("|"):
        base = part.strip().split("[", 1)[0].strip()
        if base in _TYPES:
            out.append(_TYPES[base])
        elif hasattr(builtins, base):
            out.append(getattr(builtins, base))
        else:
            raise ShammieError(f"unsupported parameter annotation {annotation!r}")
    return out


def check_value(param: Parameter, value: Any) -> Any:
    """Check `value` against the parameter's annotation (or its default's type); returns the value."""
    if param.annotation is not None:
        allowed = _annotation_types(param.annotation)
    elif param.default is None:
        return value
    else:
        allowed = [type(param.default)]
    for t in allowed:
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t in (list, tuple) and isinstance(value, (list, tuple)):
            return list(value) if t is list else tuple(value)
        if t is int and isinstance(value, bool):
            continue
        if isinstance(value, t):
            return value
    names = " | ".join("None" if t is type(None) else t.__name__ for t in allowed)
    raise ShammieError(f"parameter {param.name}={value!r} has the wrong type: expected {names}"
                       + (f" ({param.comment})" if param.comment else ""))


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a command-line `name=value`; the value is a Python literal, else taken as a string."""
    if "=" not in text:
        raise ShammieError(f"-p expects name=value, got {text!r}")
    name, raw = text.split("=", 1)
    name = name.strip()
    if not name.isidentifier():
        raise ShammieError(f"-p {text!r}: {name!r} is not a parameter name")
    raw = raw.strip()
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = {"true": True, "false": False, "none": None, "null": None}.get(raw.lower(), raw)
    return name, value


def strip_notebook(path: Path) -> bool:
    """Remove outputs, execution counts and editor metadata (keeping cell tags and the exercise
    notebooks' nbgrader metadata) in place; True if it changed."""
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    before = nbformat.writes(nb)
    for cell in nb.cells:
        cell.metadata = nbformat.NotebookNode({k: v for k, v in cell.get("metadata", {}).items()
                                               if k in ("tags", "nbgrader") and v})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("attachments", None) if cell.cell_type == "code" else None
    nb.metadata = nbformat.NotebookNode({k: v for k, v in nb.metadata.items() if k in ("kernelspec", "language_info")})
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"})
    nb.metadata["kernelspec"]["name"] = "python3"
    if "language_info" in nb.metadata:
        nb.metadata["language_info"] = nbformat.NotebookNode({"name": "python"})
    after = nbformat.writes(nb)
    if after != before:
        path.write_text(after + ("" if after.endswith("\n") else "\n"))
        return True
    return False


_MATH_OR_CODE = re.compile(r"\$\$.*?\$\$|\$[^$\n]+\$|```.*?```|`[^`\n]*`|<!--.*?-->", re.S)
_MEASURED = re.compile(r"(?<![\w.])(?:\d+\.\d+|\.\d+|\d+(?:\.\d+)?\s?%)")
_CITATION_WORDS = re.compile(r"\b(paper|papers|published|reports?|reported|table|fig\.?|figure|arxiv|authors?|cites?|cited)\b",
                             re.I)


def typed_numbers(nb) -> list[tuple[int, str, str]]:
    """Measured-looking figures typed into markdown after the setup call: decimals (0.93) and
    percentages (93 %) outside maths, inline code and comments, on lines that do not cite the paper
    (a line naming the paper, a table or the authors may quote their numbers). Returns (cell index,
    number, line) for each; results prose must be rendered from the recorded numbers instead."""
    setup = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "shammie.start(" in c.source), None)
    if setup is None:
        return []
    found = []
    for i, cell in enumerate(nb.cells[setup + 1:], setup + 1):
        if cell.cell_type != "markdown":
            continue
        for line in _MATH_OR_CODE.sub(" ", cell.source).splitlines():
            if _CITATION_WORDS.search(line):
                continue
            found += [(i, m.group(0), line.strip()) for m in _MEASURED.finditer(line)]
    return found
