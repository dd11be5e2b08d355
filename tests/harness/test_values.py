"""Every values file the harness installs fits the real subcharts, merged the way helm merges."""

from __future__ import annotations

from pathlib import Path

import pytest

from fixtures.errors import UsageError
from fixtures.secrets import generate_daskhub_secrets
from fixtures.values import (
    NOT_CHECKED,
    REPO_ROOT,
    SCHEMAS_ENV,
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


def test_the_project_carries_no_copy_of_the_charts_files():
    """The subcharts' values and schemas come from the chart under test or the workspace's
    shared folder; the project holds none of them."""
    shared = REPO_ROOT.parent / "shared" / "chart-schemas"
    published = {p.read_bytes() for p in shared.glob("*.yaml")}
    assert published, f"{shared} holds the published files the self-tests use"
    ours = [p for p in REPO_ROOT.rglob("*.yaml") if ".tox" not in p.parts]
    assert not [p for p in ours if p.read_bytes() in published]


def test_the_daskhub_readme_image_example_is_refused_before_any_cluster():
    """KubeSpawner formats every extraEnv value: the README's '{JUPYTER_IMAGE_SPEC}' fails
    every spawn with KeyError, so the lint gate refuses it naming the key and the fix."""
    readme = {
        "jupyterhub": {
            "singleuser": {
                "extraEnv": {"DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE": "{JUPYTER_IMAGE_SPEC}"}
            }
        }
    }
    with pytest.raises(UsageError) as raised:
        check_values([load_values_file(VALUES_DIR / "daskhub-e2e.yaml"), readme])
    message = str(raised.value)
    assert "jupyterhub.singleuser.extraEnv.DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE" in message
    assert "KeyError: 'JUPYTER_IMAGE_SPEC'" in message
    assert "'{{JUPYTER_IMAGE_SPEC}}'" in message


def test_kubespawner_formats_the_harness_image_value_to_the_literal_the_client_fills_in():
    """What the real KubeSpawner makes of the harness's value: the literal the dask-gateway
    client fills in from JUPYTER_IMAGE_SPEC. Its own user properties still expand."""
    from kubespawner import KubeSpawner  # noqa: PLC0415

    merged = check_values([load_values_file(VALUES_DIR / "daskhub-e2e.yaml")])
    value = merged["jupyterhub"]["singleuser"]["extraEnv"]["DASK_GATEWAY__CLUSTER__OPTIONS__IMAGE"]

    class User:
        id, name = 7, "alice"

    class Spawner:
        slug_scheme, name, user = "safe", "", User()
        _namespace_default = KubeSpawner._namespace_default
        _expand_user_properties = KubeSpawner._expand_user_properties

    assert Spawner()._expand_user_properties(value) == "{JUPYTER_IMAGE_SPEC}"
    assert Spawner()._expand_user_properties("{username}-{userid}") == "alice-7"


def test_without_a_chart_or_schema_folder_the_values_are_merged_and_said_unchecked(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv(SCHEMAS_ENV, raising=False)
    merged = check_values([load_values_file(VALUES_DIR / "daskhub-e2e.yaml")])
    assert merged["dask-gateway"]["gateway"]["prefix"] == "/services/dask-gateway"
    assert "not checked against the charts' schemas" in NOT_CHECKED
