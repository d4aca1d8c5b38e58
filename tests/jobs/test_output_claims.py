"""The publish claim on an output prefix, on moto over HTTP and on a local directory."""

from __future__ import annotations

import json
import threading

import pytest

from service.jobs import JobStore
from service.jobs.errors import OutputTaken
from service.jobs.outputs import CLAIM_FILE, OutputClaims, published_model
from tests.helpers.specs import loaded_spec

OUT = "models/flowers/v7/"
URI = f"s3://models/{OUT}"


def _job(jobs: JobStore) -> str:
    return jobs.create(loaded_spec()).id


def _holder(jobs: JobStore) -> str:
    holder: str = json.loads(jobs.store.get(OUT + CLAIM_FILE).data)["job_id"]
    return holder


def test_a_claim_on_an_empty_prefix_is_taken_and_kept_by_its_job(jobs: JobStore) -> None:
    first = _job(jobs)
    claims = OutputClaims(jobs)
    claims.claim(jobs.store, OUT, URI, first, overwrite=False)
    claims.claim(jobs.store, OUT, URI, first, overwrite=False)  # a later attempt of the job
    assert _holder(jobs) == first


def test_a_second_job_is_refused_while_the_first_holds_the_claim(jobs: JobStore) -> None:
    first, second = _job(jobs), _job(jobs)
    claims = OutputClaims(jobs)
    claims.claim(jobs.store, OUT, URI, first, overwrite=False)
    with pytest.raises(OutputTaken, match=f"job {first}.*output.overwrite"):
        claims.claim(jobs.store, OUT, URI, second, overwrite=False)
    assert _holder(jobs) == first


def test_a_published_model_without_a_claim_refuses_and_leaves_no_claim(jobs: JobStore) -> None:
    jobs.store.put(OUT + "saved_model/saved_model.pb", b"graph")
    assert published_model(jobs.store, OUT) == "saved_model/"
    with pytest.raises(OutputTaken, match=r"published model \(saved_model/\)"):
        OutputClaims(jobs).claim(jobs.store, OUT, URI, _job(jobs), overwrite=False)
    assert not jobs.store.exists(OUT + CLAIM_FILE)


def test_a_claim_of_a_failed_job_that_left_nothing_is_taken_over(jobs: JobStore) -> None:
    failed, second = _job(jobs), _job(jobs)
    claims = OutputClaims(jobs)
    claims.claim(jobs.store, OUT, URI, failed, overwrite=False)
    jobs.cancel(failed)
    claims.claim(jobs.store, OUT, URI, second, overwrite=False)
    assert _holder(jobs) == second


def test_a_claim_of_a_final_job_whose_model_is_there_refuses(jobs: JobStore) -> None:
    done, second = _job(jobs), _job(jobs)
    claims = OutputClaims(jobs)
    claims.claim(jobs.store, OUT, URI, done, overwrite=False)
    jobs.store.put(OUT + "manifest.json", b"{}")
    jobs.cancel(done)
    with pytest.raises(OutputTaken, match=rf"published by job {done} \(manifest.json\)"):
        claims.claim(jobs.store, OUT, URI, second, overwrite=False)
    assert _holder(jobs) == done


def test_overwrite_claims_whatever_is_there(jobs: JobStore) -> None:
    first, second = _job(jobs), _job(jobs)
    claims = OutputClaims(jobs)
    claims.claim(jobs.store, OUT, URI, first, overwrite=False)
    jobs.store.put(OUT + "manifest.json", b"{}")
    claims.claim(jobs.store, OUT, URI, second, overwrite=True)
    assert _holder(jobs) == second


def test_of_jobs_racing_for_one_empty_prefix_exactly_one_wins(jobs: JobStore) -> None:
    ids = [_job(jobs) for _ in range(6)]
    claims = OutputClaims(jobs)
    start = threading.Barrier(len(ids))
    won: list[str] = []
    refused: list[str] = []

    def race(job_id: str) -> None:
        start.wait()
        try:
            claims.claim(jobs.store, OUT, URI, job_id, overwrite=False)
            won.append(job_id)
        except OutputTaken:
            refused.append(job_id)

    threads = [threading.Thread(target=race, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(won) == 1 and sorted(won + refused) == sorted(ids)
    assert _holder(jobs) == won[0]
