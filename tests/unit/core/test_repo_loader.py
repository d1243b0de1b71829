"""Which files the repo loader executes (issue 10): only definition files; never a script
like train.py, never a `deploy export` copy of the repo, never what .tureenignore lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tureen.errors import ConfigError
from tureen.repo_loader import load_definitions, scan

DEFS = '''
from tureen import Entity
account = Entity(name="account", join_keys=["account_id"])
'''
SIDE_EFFECT = '''
from pathlib import Path
Path(__file__).with_suffix(".ran").write_text("executed")
'''


def write(root: Path, rel: str, text: str) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def loaded(repo: Path) -> list[str]:
    return [str(p.relative_to(repo)) for p in scan(repo).files]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    write(tmp_path, "tureen.yaml", "project: demo\n")
    write(tmp_path, "features.py", DEFS)
    return tmp_path


def test_a_training_script_is_never_executed(repo: Path) -> None:
    write(repo, "train.py", "from tureen import FeatureStore\n" + SIDE_EFFECT)
    write(repo, "score.py", "from tureen import Entity\n" + SIDE_EFFECT
          + "\nif __name__ == '__main__':\n    pass\n")
    write(repo, "helpers.py", SIDE_EFFECT)
    defs = load_definitions(repo)
    assert list(defs.entities) == ["account"]
    assert not list(repo.glob("*.ran"))
    skipped = dict((str(p.relative_to(repo)), why) for p, why in scan(repo).skipped)
    assert "__main__" in skipped["score.py"]
    assert "definition" in skipped["train.py"] and "definition" in skipped["helpers.py"]


def test_definitions_through_import_tureen_and_submodules_count(repo: Path) -> None:
    write(repo, "a.py", "import tureen\nx = tureen.Entity(name='a', join_keys=['a'])\n")
    write(repo, "b.py", "from tureen.definitions import Entity\n"
          "y = Entity(name='b', join_keys=['b'])\n")
    assert set(load_definitions(repo).entities) == {"account", "a", "b"}


def test_tureenignore_uses_gitignore_syntax(repo: Path) -> None:
    write(repo, ".tureenignore", "# experiments are not definitions\nexperiments/\n"
          "!experiments/keep.py\n/old_*.py\n")
    write(repo, "experiments/try.py", DEFS.replace("account", "tried"))
    write(repo, "experiments/keep.py", DEFS.replace("account", "kept"))
    write(repo, "old_defs.py", DEFS.replace("account", "old"))
    write(repo, "sub/old_defs.py", DEFS.replace("account", "nested_old"))
    assert sorted(loaded(repo)) == ["experiments/keep.py", "features.py", "sub/old_defs.py"]


def test_a_folder_with_its_own_tureen_yaml_is_another_repo(repo: Path) -> None:
    # what `tureen deploy export --out k8s/` writes inside the repo
    write(repo, "k8s/repo/tureen.yaml", "project: demo\n")
    write(repo, "k8s/repo/features.py", DEFS)
    write(repo, "venvish/pyvenv.cfg", "home = /usr\n")
    write(repo, "venvish/lib/defs.py", DEFS.replace("account", "venv"))
    assert loaded(repo) == ["features.py"]
    assert list(load_definitions(repo).entities) == ["account"]


def test_a_broken_definition_file_is_still_reported(repo: Path) -> None:
    write(repo, "broken.py", "from tureen import Entity\nEntity(\n")
    with pytest.raises(ConfigError, match=r"broken.py:\d"):
        load_definitions(repo)
