"""robcurves: robustness curves of classifiers against minimal adversarial perturbations.

A robustness curve R(eps) is the fraction of test points whose smallest adversarial
perturbation, measured in a given norm, is at most eps. Misclassified points count at
eps = 0; points for which no adversarial example was found count at +inf.
"""

__version__ = "0.1.0"


# Modules that were renamed keep their old import names: ``import robcurves.pipeline`` gives a
# module holding the public names of ``robcurves.stages`` (what a re-export file would hold).
# No file stands at the old paths, so that git follows each rename when it merges changes made
# to the old files. Remove an entry once nothing imports the old name.
RENAMED_MODULES = {
    "robcurves.pipeline": "robcurves.stages",
    "robcurves.jobs": "robcurves.joblog",
    "robcurves.exact.pipeline": "robcurves.exact.stage",
    "robcurves.distances": "robcurves.scale",
}


def _install_old_names() -> None:
    import importlib
    import importlib.abc
    import importlib.util
    import sys
    import types

    class OldNames(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, fullname, path=None, target=None):
            return importlib.util.spec_from_loader(fullname, self) if fullname in RENAMED_MODULES else None

        def create_module(self, spec):
            return types.ModuleType(spec.name, f"Old name of {RENAMED_MODULES[spec.name]}, which holds the code.")

        def exec_module(self, module):
            new = importlib.import_module(RENAMED_MODULES[module.__name__])
            module.__dict__.update({k: v for k, v in vars(new).items() if not k.startswith("__")})

    if not any(type(f).__name__ == "OldNames" for f in sys.meta_path):
        sys.meta_path.append(OldNames())


_install_old_names()
