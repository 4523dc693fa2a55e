"""The package's dependencies point one way: the import-linter contracts in pyproject.toml hold,
every module is in a layer, and no import of our own modules hides inside a function."""

import ast
import os
import pkgutil
import shutil
import subprocess
import sys
import tomllib

import simclr_tf
from cli_helpers import REPO

LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")
OUR_PACKAGES = ("simclr_tf", "tf_hub_export")
# Third-party packages that take seconds to import and serve only some commands: they may be
# imported where they are used, with a comment saying so.
LAZY_DEPENDENCIES = {"sklearn", "threadpoolctl", "tensorflow_datasets", "tensorflow_hub", "keras_cv"}


def lint_imports(root: str) -> subprocess.CompletedProcess:
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=root, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONPATH=root))


def contracts() -> list[dict]:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["tool"]["importlinter"]["contracts"]


def layered_modules() -> set[str]:
    (layers,) = [contract["layers"] for contract in contracts() if contract["type"] == "layers"]
    return {name.strip() for layer in layers for name in layer.replace("|", ":").split(":")}


def test_imports_keep_the_contracts():
    result = lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{len(contracts())} kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers_contract(tmp_path):
    for name in (*OUR_PACKAGES, "pyproject.toml"):
        source = os.path.join(REPO, name)
        copy = shutil.copytree if os.path.isdir(source) else shutil.copy
        copy(source, tmp_path / name)
    with open(tmp_path / "simclr_tf" / "training" / "step.py", "a") as f:
        f.write("\nfrom simclr_tf.evaluation import knn  # noqa: E402,F401\n")
    result = lint_imports(str(tmp_path))
    assert result.returncode == 1
    assert "BROKEN" in result.stdout and "simclr_tf.training.step -> simclr_tf.evaluation.knn" in result.stdout


def test_every_module_of_the_package_has_a_layer():
    modules = {f"simclr_tf.{info.name}" for info in pkgutil.iter_modules(simclr_tf.__path__)}
    assert modules - {"simclr_tf.__main__"} <= layered_modules(), "add new modules to a layer in pyproject.toml"
    assert "tf_hub_export" in layered_modules()


def function_imports(path: str) -> list[tuple[int, str]]:
    """(line, module) of every import inside a function body."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    found += [(node.lineno, alias.name) for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((node.lineno, "." * node.level + (node.module or "")))
    return found


def test_imports_inside_functions_are_only_commented_optional_dependencies():
    problems = []
    for package in OUR_PACKAGES:
        for directory, _, files in os.walk(os.path.join(REPO, package)):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(directory, name)
                with open(path) as f:
                    lines = f.read().splitlines()
                for line, module in function_imports(path):
                    where = f"{os.path.relpath(path, REPO)}:{line} imports {module}"
                    if module.split(".")[0] not in LAZY_DEPENDENCIES:
                        problems.append(f"{where} inside a function: import it at the top of the module")
                    elif not any("#" in text for text in lines[max(0, line - 4):line]):
                        problems.append(f"{where} inside a function without a comment saying why")
    assert not problems, "\n".join(problems)
