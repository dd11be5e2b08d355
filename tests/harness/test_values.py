"""Every values file the harness installs fits the real subcharts, merged the way helm merges."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.errors import UsageError
from fixtures.secrets import generate_daskhub_secrets
from fixtures.values import (
    REPO_ROOT,
    SUBCHARTS,
    VALUES_DIR,
    ChartSchemas,
    check_values,
    deep_merge,
    gateway_extra_config,
    load_values_file,
    validate,
)

VALUES_FILES = sorted(VALUES_DIR.glob("*.yaml"))


def test_there_are_values_files():
    assert VALUES_FILES


@pytest.mark.parametrize("daskhub", list(SUBCHARTS))
@pytest.mark.parametrize("path", VALUES_FILES, ids=[p.name for p in VALUES_FILES])
def test_each_values_file_with_generated_secrets_fits_both_daskhub_versions(
    path: Path, daskhub: str
):
    merged = check_values([load_values_file(path), generate_daskhub_secrets()], daskhub)
    gateway_token = merged["dask-gateway"]["gateway"]["auth"]["jupyterhub"]["apiToken"]
    assert merged["jupyterhub"]["hub"]["services"]["dask-gateway"]["apiToken"] == gateway_token
    assert len(gateway_token) == 64


def test_the_generated_secrets_are_in_the_daskhub_readme_shape_and_fresh():
    first, second = generate_daskhub_secrets(), generate_daskhub_secrets()
    hub = first["jupyterhub"]
    tokens = {
        hub["proxy"]["secretToken"],
        hub["hub"]["services"]["dask-gateway"]["apiToken"],
        hub["hub"]["services"]["daskhub-e2e"]["apiToken"],
    }
    assert len(tokens) == 3
    assert first != second


@pytest.mark.parametrize(
    ("override", "key_path"),
    [
        (
            {"jupyterhub": {"singleuser": {"servieAccountName": "daskkubernetes"}}},
            "jupyterhub.singleuser",
        ),
        (
            {"dask-gateway": {"gateway": {"auth": {"type": "jupyterhubb"}}}},
            "dask-gateway.gateway.auth.type",
        ),
        ({"dask-gateway": {"extraConfig": {"optionHandler": "pass"}}}, "dask-gateway"),
        ({"daskhub": {"jupyterhub": {}}}, "daskhub"),
        ({"dask-kubernetes": {"enable": True}}, "dask-kubernetes.enable"),
    ],
)
def test_a_misspelt_key_fails_with_its_key_path(override: dict, key_path: str):
    with pytest.raises(UsageError) as raised:
        check_values([load_values_file(VALUES_DIR / "daskhub-e2e.yaml"), override])
    assert f"{key_path}:" in str(raised.value)


def test_the_readme_examples_faults_are_caught():
    """The published README's dask-kubernetes example nests under `daskhub:` and misspells
    serviceAccountName; its option handler sits at dask-gateway.extraConfig."""
    charts = ChartSchemas.load("main")
    readme = {
        "daskhub": {
            "jupyterhub": {"singleuser": {"servieAccountName": "daskkubernetes"}},
            "dask-gateway": {"enabled": False},
            "dask-kubernetes": {"enabled": True},
        }
    }
    problems = validate(charts.merged_values([readme]), charts)
    assert any(p.startswith("daskhub:") and "README" in p for p in problems)


def test_merge_is_helms_deep_merge():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert deep_merge(base, {"a": {"c": [3]}, "d": None}) == {"a": {"b": 1, "c": [3]}}
    assert base == {"a": {"b": 1, "c": [1, 2]}, "d": 1}


def test_the_image_option_handler_is_what_the_local_gateway_runs():
    merged = check_values([load_values_file(VALUES_DIR / "daskhub-e2e.yaml")])
    ((key, code),) = gateway_extra_config(merged)
    assert key == "10-image-option"
    assert "When specifying an image you must also provide a tag" in code


def test_a_values_file_that_is_not_a_mapping_is_a_usage_error(tmp_path: Path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(UsageError, match="must hold a mapping"):
        load_values_file(path)


def test_the_schema_copies_are_the_published_files_of_the_workspace():
    """values/chart-schemas/ holds the files of ../shared/chart-schemas/, unchanged."""
    shared = REPO_ROOT.parent / "shared" / "chart-schemas"
    if not shared.is_dir():
        pytest.skip(f"{shared} is not on this machine; nothing to compare the copies with")
    copies = VALUES_DIR / "chart-schemas"
    published = sorted(p.name for p in shared.glob("*.yaml"))
    assert published and sorted(p.name for p in copies.glob("*.yaml")) == published
    for name in published:
        assert (copies / name).read_bytes() == (shared / name).read_bytes(), name
