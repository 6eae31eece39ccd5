"""The SDK's models against the gateway's own schemas (`/openapi.json`, generated from the
paddock-wire crate): a field added on the wire and not here, or a renamed one, fails here."""

import dataclasses
import re

import httpx
import pytest

from paddock import _protocol as p
from paddock import errors, models


@pytest.fixture(scope="module")
def schemas(server):
    headers = {"Authorization": f"Bearer {server['token']}"}
    doc = httpx.get(f"{server['url']}/openapi.json", headers=headers, timeout=10).json()
    return doc["components"]["schemas"]


def _props(schemas, name):
    return set(schemas[name].get("properties", {}))


def _fields(cls):
    return {f.name for f in dataclasses.fields(cls)}


def _snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_sandbox_info_reads_every_wire_field(schemas):
    assert {_snake(k) for k in _props(schemas, "SandboxInfo")} == _fields(models.SandboxInfo)


def test_process_info_reads_every_wire_field(schemas):
    assert _props(schemas, "ProcessInfo") == _fields(models.ProcessInfo)


def test_file_entry_reads_every_wire_field(schemas):
    wire = {"type" if k == "type" else k for k in _props(schemas, "FileEntry")}
    assert wire == _fields(models.FileEntry)


def test_command_result_reads_every_wire_field(schemas):
    # The SDK decodes the encodings into text, so it keeps no field for them.
    wire = _props(schemas, "ExecResult") - {"stdout_encoding", "stderr_encoding"}
    assert wire == _fields(models.CommandResult)


def test_every_wire_error_code_has_an_exception(schemas):
    codes = set(schemas["Code"]["enum"]) if "Code" in schemas else set(schemas["Error"]["properties"]["code"]["enum"])
    assert codes, "the schema lists no error codes"
    assert codes == set(errors._BY_CODE)


def test_create_request_sends_only_fields_the_gateway_accepts(schemas):
    request = p.create_request(
        name="n",
        namespace="ns",
        template=None,
        warm_pool=None,
        image="img",
        runtime="gvisor",
        command=["sh"],
        env={"A": "1"},
        working_dir="/",
        memory="256Mi",
        cpu="1",
        timeout_seconds=60,
        labels={"a": "b"},
        wait=True,
        wait_timeout=30,
        volumes=[{"host_path": "/tmp", "mount_path": "/data", "read_only": True}],
    )
    accepted = _props(schemas, "CreateSandbox")
    assert set(request.json) <= accepted, set(request.json) - accepted
    for volume in request.json["volumes"]:
        assert set(volume) <= _props(schemas, "HostVolume")


def test_egress_record_reads_every_wire_field(schemas):
    assert {_snake(k) for k in _props(schemas, "EgressRecord")} == _fields(models.EgressRecord)


def test_create_request_sends_the_policy(schemas):
    request = p.create_request(
        name=None, namespace=None, template=None, warm_pool=None, image="host", runtime=None,
        command=None, env=None, working_dir=None, memory=None, cpu=None, timeout_seconds=None,
        labels=None, wait=True, wait_timeout=30, policy="pypi",
    )
    assert request.json["policy"] == "pypi"
    assert "policy" in _props(schemas, "CreateSandbox")


def test_scoped_token_reads_every_wire_field(schemas):
    assert {_snake(k) for k in _props(schemas, "MintedToken")} == _fields(models.ScopedToken)
    assert set(p.mint_token_body(8888, "GET", "/", 60)) == _props(schemas, "MintToken")


def test_file_stat_and_event_read_every_wire_field(schemas):
    assert {_snake(k) for k in _props(schemas, "FileStat")} == _fields(models.FileStat)
    assert {_snake(k) for k in _props(schemas, "FileEvent")} == _fields(models.FileEvent)
