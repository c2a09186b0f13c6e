"""Running a campaign against a target: bounded concurrency and rate, resumable, with a progress bar.

Each case is one task: its rounds are sent in order (a multi-turn attack waits for each answer), the
answers are judged, and the attempt is recorded in the resume state as soon as it is done. Results come
back in campaign order whatever order they finished in, so a seed gives the same report every time.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from vallum.redteam.campaign import Campaign, Case, Message
from vallum.redteam.client import RetryPolicy, Target, TargetClient
from vallum.redteam.errors import TargetError
from vallum.redteam.judges import Judge, decide
from vallum.redteam.llm_judge import LLMJudge
from vallum.redteam.pacing import Pacer
from vallum.redteam.results import Attempt, Evidence, Outcome, Response, ToolCallRecord
from vallum.redteam.state import StateFile
from vallum.redteam.wire import Reply


@dataclass(frozen=True)
class RunOptions:
    concurrency: int = 4
    rate: float | None = None  # requests per second, all attacks together
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    progress: bool | None = None  # None: a bar when standard error is a terminal


def target_fingerprint(campaign: Campaign, target: Target) -> str:
    return f"{campaign.fingerprint()}/{target.api}:{target.url.rstrip('/')}#{target.model_name}"


async def run_async(
    campaign: Campaign,
    target: Target,
    *,
    options: RunOptions = RunOptions(),
    judge: Judge | None = None,
    judge_target: Target | None = None,
    state_path: Path | None = None,
    fresh: bool = False,
) -> list[Attempt]:
    judge = judge or Judge()
    state = StateFile(state_path, target_fingerprint(campaign, target)) if state_path else None
    done = {} if state is None or fresh else state.load()
    client = TargetClient(target, options.retry, Pacer(options.rate))
    judge_client = TargetClient(judge_target, options.retry, Pacer(options.rate)) if judge_target else None
    llm = LLMJudge(judge_client) if judge_client else None
    slots = asyncio.Semaphore(max(1, options.concurrency))
    show = sys.stderr.isatty() if options.progress is None else options.progress
    bar = tqdm(total=len(campaign.cases), initial=len(done), disable=not show, unit="attack", file=sys.stderr)
    results: dict[str, Attempt] = dict(done)

    async def one(case: Case) -> None:
        async with slots:
            attempt = await attack(case, client, judge, llm)
        results[case.id] = attempt
        if state is not None:
            state.record(attempt)
        bar.update(1)
        if attempt.outcome == "succeeded":
            bar.set_postfix_str(f"last success: {case.id}", refresh=False)

    if state is not None:
        state.open(fresh=fresh)
    try:
        await asyncio.gather(*(one(case) for case in campaign.cases if case.id not in done))
    finally:
        bar.close()
        if state is not None:
            state.close()
        await client.aclose()
        if judge_client is not None:
            await judge_client.aclose()
    return [results[case.id] for case in campaign.cases]


def run(
    campaign: Campaign,
    target: Target,
    *,
    options: RunOptions = RunOptions(),
    judge: Judge | None = None,
    judge_target: Target | None = None,
    state_path: Path | None = None,
    fresh: bool = False,
) -> list[Attempt]:
    """run_async from synchronous code (the CLI, tests)."""
    return asyncio.run(
        run_async(
            campaign,
            target,
            options=options,
            judge=judge,
            judge_target=judge_target,
            state_path=state_path,
            fresh=fresh,
        )
    )


async def attack(case: Case, client: TargetClient, judge: Judge, llm: LLMJudge | None) -> Attempt:
    messages: list[Message] = []
    replies: list[Reply] = []
    try:
        for round_ in case.rounds:
            messages.extend(round_)
            reply = await client.send(case.system, messages, case.tools, key=case.id)
            replies.append(reply)
            if reply.blocked:
                break
            messages.append(Message("assistant", reply.as_assistant_text()))
        evidence = judge.evidence(case, replies)
        if llm is not None:
            evidence += await llm.evidence(case, replies)
    except TargetError as exc:
        return _attempt(case, messages, replies, [], "error", "error", error=str(exc), tries=exc.tries)
    outcome, reason = decide(evidence)
    return _attempt(case, messages, replies, evidence, outcome, reason)


def _attempt(
    case: Case,
    messages: Sequence[Message],
    replies: Sequence[Reply],
    evidence: list[Evidence],
    outcome: Outcome,
    reason: str,
    *,
    error: str | None = None,
    tries: int = 0,
) -> Attempt:
    attack = case.attack
    conversation = [m.to_dict() for m in messages]  # the answers included, each after its round
    return Attempt(
        case_id=case.id,
        attack_id=attack.id,
        attack_name=attack.name,
        suite=case.suite,
        category=attack.category,
        goal=attack.goal,
        mutators=list(case.chain),
        system=case.system,
        conversation=conversation,
        responses=[
            Response(
                text=r.text,
                tool_calls=[ToolCallRecord(name=c.name, arguments=c.arguments) for c in r.tool_calls],
                blocked=r.blocked,
                status=r.status,
                tries=r.tries,
            )
            for r in replies
        ],
        outcome=outcome,
        reason=reason,
        evidence=evidence,
        error=error,
        tries=tries + sum(r.tries for r in replies),
        carrier=case.carrier,
        carrier_source=case.carrier_source,
        source=case.source,
        tools=[tool.name for tool in case.tools],
        secret=case.secret if case.secret in case.system else "",
        success=attack.success.model_dump(mode="json", exclude_defaults=True),
    )
