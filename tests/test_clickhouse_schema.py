"""The ClickHouse schema's two layouts come from one set of declarations: for one server a table
each, for a cluster (`--cluster NAME`) a Replicated table on every node (its path from the
{shard} and {replica} macros) and a Distributed table over it, every statement ON CLUSTER. The
statements are checked by ClickHouse's own parser (chdb's formatQuery): a cluster cannot be run
here, its DDL can still be proved well formed."""

from __future__ import annotations

import re

import pytest

from runs_store.domain.errors import StoreError
from runs_store.store.clickhouse import open_store
from runs_store.store.clickhouse.schema import (
    RUNS,
    TABLES,
    create_statements,
    local_name,
    schema_statements,
)
from runs_store.store.location import ChdbLocation

pytestmark = pytest.mark.store


@pytest.fixture(scope="module")
def parser(tmp_path_factory):
    """ClickHouse's parser: formatQuery of a chdb store."""
    with open_store(ChdbLocation(tmp_path_factory.mktemp("parser") / "store")) as con:

        def parse(statement: str) -> str:
            return con.execute("SELECT formatQuery({q:String})", {"q": statement})[0][0]

        yield parse


def columns_of(statement: str) -> str:
    return statement[statement.index("(") : statement.index("\n)") + 2]


def keys_of(statement: str) -> list[str]:
    """The clauses after ENGINE: PARTITION BY, ORDER BY."""
    return statement.split("\n)\nENGINE = ")[1].splitlines()[1:]


def test_every_statement_of_both_layouts_parses(parser):
    for cluster in (None, "runs_cluster"):
        for statement in schema_statements("runs", cluster):
            assert parser(statement).startswith("CREATE ")


def test_on_one_server_each_table_is_one_mergetree(parser):
    for table in TABLES:
        (statement,) = create_statements(table, "runs")
        assert "ON CLUSTER" not in statement and "Replicated" not in statement
        assert f"ENGINE = {table.engine}" in parser(statement)


def test_on_a_cluster_each_table_is_replicated_with_a_distributed_table_over_it(parser):
    for table in TABLES:
        local, distributed = create_statements(table, "runs", "main")
        (single,) = create_statements(table, "runs")
        local_name_quoted = f"`runs`.`{local_name(table.name)}` ON CLUSTER `main`"
        assert local.startswith(f"CREATE TABLE IF NOT EXISTS {local_name_quoted}\n")
        engine_args = ", ".join(
            ("'/clickhouse/tables/{shard}/{database}/{table}'", "'{replica}'", *table.engine_args)
        )
        assert f"ENGINE = Replicated{table.engine}({engine_args})" in local
        # the same declaration, not a copy: the same columns, indexes, partition and order
        assert columns_of(local) == columns_of(single)
        assert keys_of(local) == keys_of(single)
        assert distributed == (
            f"CREATE TABLE IF NOT EXISTS `runs`.`{table.name}` ON CLUSTER `main` "
            f"AS `runs`.`{local_name(table.name)}`\n"
            f"ENGINE = Distributed(`main`, `runs`, `{local_name(table.name)}`, {table.shard_by})"
        )
        assert "Distributed(main, runs" in parser(distributed)


def test_a_run_and_all_its_versions_share_a_key_a_partition_and_a_shard():
    """Only the start and the id never change for a run: the key, partition and shard are made of
    them, so ReplacingMergeTree and FINAL see every version of a run together."""
    names = re.findall(r"\w+", " ".join((RUNS.order_by, RUNS.partition_by, RUNS.shard_by)))
    assert set(names) - {"toYYYYMM", "cityHash64"} == {"started_at", "id"}
    assert RUNS.engine == "ReplacingMergeTree" and RUNS.engine_args == ("updated_at",)


@pytest.mark.parametrize("name", ["runs-prod", "a b", "x`; DROP TABLE runs", ""])
def test_a_name_that_is_not_an_identifier_is_refused(name):
    with pytest.raises(StoreError, match="is not a ClickHouse name this store takes"):
        schema_statements("runs", name)


def test_every_migration_statement_of_both_layouts_parses(parser):
    from runs_store.store.clickhouse.schema import MIGRATIONS, _migration_statements

    for cluster in (None, "runs_cluster"):
        for steps in MIGRATIONS.values():
            statements = _migration_statements(steps, "runs", cluster)
            emptied = [s for s in statements if s.startswith("TRUNCATE")]
            # each step empties what it fills again (the rollups, or the agents' facts)
            assert len(emptied) in (1, 2)
            local = "_local` ON CLUSTER"
            assert all((local in statement) == bool(cluster) for statement in emptied)
            for statement in statements:
                assert parser(statement).split()[0] in ("CREATE", "TRUNCATE", "INSERT")
