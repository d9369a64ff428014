"""docs/errors.md cannot drift from the code: every row names a test that exists, an error class that imports
(with the base class the page states), and a message whose fixed parts still appear, in order, in one string
of genrec's source, raised as that class. Every exception class genrec defines must be on the page."""

from __future__ import annotations

import ast
import builtins
import importlib
import re
from pathlib import Path

import genrec

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "errors.md"
PACKAGE = Path(genrec.__file__).parent
HOLE = "\x00"  # an interpolated value in a source template; "…" on the page
SECTIONS = (
  "Config",
  "Data",
  "Checkpoints and runs",
  "Command line and launch",
  "Hugging Face import",
  "Semantic IDs and stages",
  "Artifacts",
  "Images",
)


def _cells(line: str) -> list[str]:
  return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def tables(text: str) -> list[tuple[str, list[str], list[list[str]]]]:
  """(section heading, header cells, rows) of every Markdown table."""
  out, section, lines = [], "", text.splitlines()
  for i, line in enumerate(lines):
    if line.startswith("## "):
      section = line[3:].strip()
    if (
      line.startswith("|")
      and i + 1 < len(lines)
      and lines[i + 1].startswith("|---")
      and not lines[i - 1].startswith("|")
    ):
      rows = []
      for body in lines[i + 2 :]:
        if not body.startswith("|"):
          break
        rows.append(_cells(body))
      out.append((section, _cells(line), rows))
  return out


def _code(cell: str) -> str:
  match = re.fullmatch(r"`([^`]+)`", cell)
  assert match, f"not a code span: {cell!r}"
  return match.group(1)


def catalogue(text: str) -> list[dict]:
  rows = []
  for section, header, body in tables(text):
    if header[0] == "What you did":
      for cells in body:
        assert len(cells) == 5, cells
        rows.append(
          {
            "section": section,
            "did": cells[0],
            "error": _code(cells[1]),
            "message": _code(cells[2]),
            "test": _code(cells[4]),
          }
        )
  return rows


def error_classes(text: str) -> dict[str, tuple[str, str]]:
  """Page name → (module, base name), from the "Error classes" table."""
  (body,) = [rows for _, header, rows in tables(text) if header[0] == "Class"]
  return {_code(c[0]): (_code(c[1]), _code(c[2])) for c in body}


def resolve(name: str, classes: dict[str, tuple[str, str]]) -> type | None:
  if name in classes:
    return getattr(importlib.import_module(classes[name][0]), name.rpartition(".")[2], None)
  found = getattr(builtins, name, None)
  return found if isinstance(found, type) and issubclass(found, BaseException) else None


# -- checks: each returns the problems it found --------------------------------------------------------------
def missing_tests(rows: list[dict]) -> list[str]:
  problems, defined = [], {}
  for row in rows:
    path, *names = row["test"].split("::")
    file = ROOT / path
    if not path.startswith("tests/") or not file.is_file() or not names:
      problems.append(f"{row['test']}: no such test file")
      continue
    if file not in defined:
      tree = ast.parse(file.read_text())
      funcs = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
      for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        funcs |= {f"{cls.name}::{f.name}" for f in cls.body if isinstance(f, ast.FunctionDef)}
      defined[file] = funcs
    name = re.sub(r"\[.*\]$", "", "::".join(names))
    if not name.split("::")[-1].startswith("test") or name not in defined[file]:
      problems.append(f"{row['test']}: {name} is not a test in {path}")
  return problems


def class_problems(rows: list[dict], classes: dict[str, tuple[str, str]]) -> list[str]:
  problems = []
  for name, (module, base) in classes.items():
    cls, base_cls = resolve(name, classes), resolve(base, classes)
    if cls is None or base_cls is None or not issubclass(cls, base_cls):
      problems.append(f"{name}: not importable from {module} as a subclass of {base}")
  problems += [
    f"{row['error']} (row {row['did']!r}): not an exception class in the table or builtins"
    for row in rows
    if resolve(row["error"], classes) is None
  ]
  return problems


def _render(node) -> str | None:
  """A string expression with every interpolated value as HOLE; None if it is not one."""
  if isinstance(node, ast.Constant):
    return node.value if isinstance(node.value, str) else None
  if isinstance(node, ast.JoinedStr):
    return "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
  if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
    return (_render(node.left) or HOLE) + (_render(node.right) or HOLE)
  return None


def source_templates() -> tuple[list[tuple[str, str]], list[str]]:
  """([(message template, raised class name)] of every `raise X(message, ...)`, [every other string])."""
  raised, strings = [], []
  for file in sorted(PACKAGE.rglob("*.py")):
    for node in ast.walk(ast.parse(file.read_text())):
      if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args:
        func = node.exc.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        template = _render(node.exc.args[0])
        if template is not None:
          raised.append((template, name))
      elif isinstance(node, (ast.JoinedStr, ast.Constant)):
        template = _render(node)
        if template:
          strings.append(template)
  return raised, strings


def _in_order(message: str, template: str) -> bool:
  at = 0
  for piece in (p for p in message.split("…") if p):
    at = template.find(piece, at)
    if at < 0:
      return False
    at += len(piece)
  return True


def message_problems(rows: list[dict], classes: dict[str, tuple[str, str]]) -> list[str]:
  """A message must match a raise of its class (or a base it derives from: wrappers re-raise narrower); a
  message built in a variable before the raise only has to appear in some string."""
  raised, strings = source_templates()
  problems = []
  for row in rows:
    if not row["message"].replace("…", "").strip():
      problems.append(f"{row['did']!r}: the message is all elisions")
      continue
    matches = [name for template, name in raised if _in_order(row["message"], template)]
    doc_cls = resolve(row["error"], classes)
    if matches:
      bases = [
        c
        for name in matches
        for c in [resolve(name, classes)]
        + [resolve(page, classes) for page in classes if page.rpartition(".")[2] == name]
        if c is not None
      ]
      if doc_cls is not None and not any(issubclass(doc_cls, b) for b in bases):
        problems.append(f"{row['did']!r}: {row['message']!r} is raised as {sorted(set(matches))}, not {row['error']}")
    elif not any(_in_order(row["message"], s) for s in strings):
      problems.append(f"{row['did']!r}: {row['message']!r} is not in genrec's source")
  return problems


# -- the tests ------------------------------------------------------------------------------------------------
TEXT = DOC.read_text()
ROWS = catalogue(TEXT)
CLASSES = error_classes(TEXT)


def test_the_catalogue_covers_every_area():
  assert len(ROWS) >= 25
  per_section = {s: sum(r["section"] == s for r in ROWS) for s in SECTIONS}
  assert all(per_section.values()), per_section
  assert len({r["did"] for r in ROWS}) == len(ROWS), "a row is listed twice"


def test_every_row_names_a_test_that_exists():
  assert not missing_tests(ROWS)


def test_every_error_class_imports_with_its_stated_base():
  assert not class_problems(ROWS, CLASSES)


def test_every_exception_class_genrec_defines_is_listed():
  listed = {(module, name.rpartition(".")[2]) for name, (module, _) in CLASSES.items()}
  defined = set()
  for file in sorted(PACKAGE.rglob("*.py")):
    module = ".".join(file.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
    for node in ast.walk(ast.parse(file.read_text())):
      bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in getattr(node, "bases", ())]
      if isinstance(node, ast.ClassDef) and any(b.endswith(("Error", "Exception")) for b in bases):
        defined.add((module, node.name))
  assert len(defined) >= 20
  assert defined - listed == set(), "add these to the Error classes table of docs/errors.md"


def test_every_message_is_still_raised_as_documented():
  assert not message_problems(ROWS, CLASSES)


def test_the_checks_catch_a_stale_row():
  stale = [
    {
      "did": "a",
      "error": "ConfigError",
      "message": "this message was never written",
      "test": "tests/test_errors_doc.py::test_that_does_not_exist",
    },
    {"did": "b", "error": "NoSuchError", "message": "…", "test": "tests/nowhere.py::test_x"},
    {
      "did": "c",
      "error": "DataError",
      "message": "trainer.best_mode must be 'max' or 'min', got …",
      "test": "tests/test_errors_doc.py::test_the_checks_catch_a_stale_row[x]",
    },
  ]
  assert len(missing_tests(stale)) == 2
  assert class_problems(stale, CLASSES) == ["NoSuchError (row 'b'): not an exception class in the table or builtins"]
  problems = message_problems(stale, CLASSES)
  assert len(problems) == 3 and "never written" in problems[0] and "all elisions" in problems[1]
  assert "raised as ['ConfigError'], not DataError" in problems[2]
