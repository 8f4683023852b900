"""API version parsing, negotiation and the per-version route differences."""

import pytest

from backendai_jupyter.client import ProtocolError
from backendai_jupyter.client._versioning import Features, negotiate, parse_api_version


@pytest.mark.parametrize(
    "text,expected",
    [
        ("v5.20191215", (5, "20191215")),
        ("v9.20250722", (9, "20250722")),
        (" v10.20300101 ", (10, "20300101")),
    ],
)
def test_parse(text: str, expected: tuple[int, str]) -> None:
    assert parse_api_version(text) == expected


@pytest.mark.parametrize("text", ["5.20191215", "v5", "v5.2019", "vx.20191215", ""])
def test_parse_bad(text: str) -> None:
    with pytest.raises(ProtocolError, match="malformed API version"):
        parse_api_version(text)


def test_negotiate_takes_older() -> None:
    assert negotiate((5, "20191215")) == (5, "20191215")
    assert negotiate((10, "20300101")) == (9, "20250722")


@pytest.mark.parametrize(
    "version,gql,tus,top_level_cluster,download_post",
    [
        ((5, "20191215"), "/admin/graphql", False, False, False),
        ((6, "20200815"), "/admin/graphql", True, True, False),
        ((6, "20210815"), "/admin/gql", True, True, False),
        ((8, "20240315"), "/admin/gql", True, True, False),
        ((8, "20240915"), "/admin/gql", True, True, True),
        ((9, "20250722"), "/admin/gql", True, True, True),
    ],
)
def test_features(
    version: tuple[int, str], gql: str, tus: bool, top_level_cluster: bool, download_post: bool
) -> None:
    f = Features(version)
    assert f.gql_path == gql
    assert f.storage_proxy_transfers is tus
    assert f.cluster_fields_top_level is top_level_cluster
    assert f.session_download_post is download_post
