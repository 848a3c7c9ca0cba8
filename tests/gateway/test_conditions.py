"""Conditional routing queries: every operator, paths, and compile errors."""

from __future__ import annotations

from typing import Any

import pytest

from traceway.gateway.conditions import QueryError, compile_query

CONTEXT = {
    "metadata": {"plan": "pro", "region": "eu-west", "score": "42", "team": {"id": "t1"}},
    "params": {"model": "gpt-4o", "max_tokens": 500, "temperature": 0.2, "stream": True},
}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"metadata.plan": "pro"}, True),
        ({"metadata.plan": {"$eq": "free"}}, False),
        ({"metadata.plan": {"$ne": "free"}}, True),
        ({"metadata.missing": {"$ne": "x"}}, True),
        ({"params.max_tokens": {"$gt": 499}}, True),
        ({"params.max_tokens": {"$gte": 500, "$lte": 500}}, True),
        ({"params.max_tokens": {"$lt": 500}}, False),
        ({"params.temperature": {"$lte": 0.2}}, True),
        ({"metadata.score": {"$gt": 40}}, True),  # numeric strings compare as numbers
        ({"metadata.region": {"$gt": 3}}, False),  # not a number: no match, no error
        ({"metadata.missing": {"$gt": 1}}, False),
        ({"params.model": {"$in": ["gpt-4o", "gpt-4.1"]}}, True),
        ({"params.model": {"$nin": ["gpt-4o"]}}, False),
        ({"metadata.missing": {"$nin": ["x"]}}, True),
        ({"metadata.region": {"$regex": "^eu-"}}, True),
        ({"params.max_tokens": {"$regex": "5"}}, False),  # regex matches strings only
        ({"metadata.team.id": "t1"}, True),
        ({"params.stream": True}, True),
        ({"$and": [{"metadata.plan": "pro"}, {"params.stream": False}]}, False),
        ({"$or": [{"metadata.plan": "free"}, {"params.model": "gpt-4o"}]}, True),
        ({"metadata.plan": "pro", "params.model": "o3"}, False),
        (
            {
                "$or": [
                    {"$and": [{"metadata.plan": "pro"}, {"metadata.region": "us"}]},
                    {"params.max_tokens": {"$in": [500, 1000]}},
                ]
            },
            True,
        ),
    ],
)
def test_operators(query: dict[str, Any], expected: bool) -> None:
    assert compile_query(query)(CONTEXT) is expected


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"metadata.plan": {"$like": "p"}}, "unknown operator '$like'"),
        ({"$not": [{"metadata.plan": "pro"}]}, "unknown operator '$not' at the top of a query"),
        ({"$or": []}, "$or takes a non-empty list of queries"),
        ({"metadata.plan": {"$in": "pro"}}, "$in and $nin take a list"),
        ({"metadata.plan": {"$regex": "("}}, "invalid $regex '('"),
        ({"plan": "pro"}, "query paths start with 'metadata.' or 'params.': 'plan'"),
        ("metadata.plan", "a query is a JSON object"),
    ],
)
def test_compile_errors(query: Any, message: str) -> None:
    with pytest.raises(QueryError) as raised:
        compile_query(query)
    assert str(raised.value).startswith(message)
