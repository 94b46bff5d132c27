"""The package's import layers: a module imports only modules of the layers below its own.

So the posterior's contract (`posterior`) stays at the bottom, where the models write it
and every reader reads it, and no import circle comes back. A new module takes its place
in LAYERS; a failure names the file, the line and the import that breaks a layer. Modules
of one layer are independent: none imports another. Imports inside functions count too.
"""

import ast

from conftest import ROOT

PACKAGE = ROOT / "workflow" / "whatmatters"

LAYERS = [   # top first: (what the layer is, its modules)
    ("entry point", ["__main__"]),
    ("command line: one subcommand per step", ["cli"]),
    ("steps: fit one outcome, run a training job, plot, generate the schema",
     ["fitting", "jobs", "plots", "schema"]),
    ("the models, the summaries, training one config, the study and the run table",
     ["binomial", "collapsed", "summarize", "answer", "train", "study", "analysis_spec", "aggregate"]),
    ("readers of a posterior, sampling, simulation, designs",
     ["estimands", "classical", "ppc", "sampling", "simulation", "design"]),
    ("building blocks: hypotheses, the run-table check, priors, the config population, datasets",
     ["hypotheses", "runtable", "priors", "population", "data", "status"]),
    ("what a dataset kind allows: shifts that fit it, split sizes", ["workloads"]),
    ("contracts and registries: the posterior file, outcomes, output files, factors, study files, the catalog "
     "of kinds, the run store's paths", ["posterior", "outcomes", "outputs", "factors", "config", "catalog", "runstore"]),
    ("a kind's settings from its builder", ["registry"]),
    ("foundation", ["io", "errors", "blas"]),
]


def module_of(path) -> str:
    """'fitting' for whatmatters/fitting.py; a subpackage is one module ('factors')."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported(tree: ast.AST, known: set[str]) -> list[tuple[int, str]]:
    """(line, module) of every import of a package module in `tree`, at any depth.
    `from whatmatters import x` imports module x when x is one; otherwise (x =
    `__version__`) it reads the package root, which every import loads anyway."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "whatmatters":
            parts = node.module.split(".")
            if len(parts) > 1:
                found.append((node.lineno, parts[1]))
            else:
                found += [(node.lineno, a.name) for a in node.names if a.name in known]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1]) for a in node.names
                      if a.name.startswith("whatmatters.")]
    return found


def violations(sources: dict[str, list[tuple[str, str]]], layers=LAYERS) -> list[str]:
    """'file:line: a (layer) imports b (layer)' for every import that does not go down.

    Args:
      sources: module -> [(file name, source text)].
    """
    rank = {m: i for i, (_, mods) in enumerate(layers) for m in mods}
    problems = []
    for module, files in sources.items():
        for name, text in files:
            for line, target in imported(ast.parse(text), set(sources)):
                if target == module:
                    continue
                if rank[target] <= rank[module]:
                    problems.append(f"{name}:{line}: {module} ({layers[rank[module]][0]}) imports {target} "
                                    f"({layers[rank[target]][0]}): a module imports only from layers below its own")
    return problems


def package_sources() -> dict[str, list[tuple[str, str]]]:
    sources = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__init__.py" and path.parent == PACKAGE:
            continue   # the package root: thread and BLAS set-up, run before any module
        sources.setdefault(module_of(path), []).append((str(path.relative_to(ROOT)), path.read_text()))
    return sources


def test_every_module_has_one_layer():
    placed = [m for _, mods in LAYERS for m in mods]
    assert len(placed) == len(set(placed)), "a module is in two layers"
    assert sorted(package_sources()) == sorted(placed), "place each new module in LAYERS"


def test_every_import_goes_down_a_layer():
    problems = violations(package_sources())
    assert not problems, "\n".join(problems)


def test_an_upward_or_sideways_import_is_named():
    layers = [("top", ["a", "b"]), ("bottom", ["c"])]
    sources = {"a": [("a.py", "from whatmatters.c import x\nfrom whatmatters import b\n")],
               "b": [("b.py", "def f():\n    import whatmatters.c\n")],
               "c": [("c.py", "import os\n\ndef g():\n    from whatmatters.a import y\n")]}
    assert violations(sources, layers) == [
        "a.py:2: a (top) imports b (top): a module imports only from layers below its own",
        "c.py:4: c (bottom) imports a (top): a module imports only from layers below its own",
    ]
