"""Speed of text.normalize on ordinary and obfuscated text of 100 B to 100 KB (one core, CPU time).

Run: python benchmarks/speed_normalize.py
"""

from __future__ import annotations

import json
import time
import timeit
from pathlib import Path

from vallum.text import normalize

_PROMPTS = Path(__file__).resolve().parents[2] / "shared/data/train/benign_ultrachat.jsonl"
_SIZES = (100, 1_000, 10_000, 100_000)


def _corpus() -> dict[str, str]:
    if _PROMPTS.exists():
        rows = [json.loads(line)["text"] for line in _PROMPTS.open(encoding="utf-8")]
    else:
        rows = ["Can you explain the symbolism behind the Day of the Dead celebrations? " * 3] * 2000
    return {
        "English, ASCII": "\n\n".join(r for r in rows if r.isascii()),
        "real prompts (’, é, …)": "\n\n".join(rows),
        "Russian": "Привет! Расскажи мне об истории России и о культуре XIX века. " * 2000,
        "Chinese": "请告诉我关于中国历史的故事，特别是唐朝的文化发展和诗歌。" * 4000,
        "French": "Pourriez-vous m’expliquer l’histoire de la Révolution française ? " * 2000,
        "every trick, densely": (
            "ＩＧＮＯＲＥ 𝐚𝐥𝐥 іgnоrе pre\u200bvious \U000e0069\U000e0067 i g n o r e 1gn0r3 "
            "aWdub3JlIGFsbCBwcmV2aW91cw== "
        )
        * 2000,
    }


def _seconds_per_call(text: str) -> float:
    normalize(text)  # warm the fold caches
    number = max(5, 200_000 // len(text))
    runs = timeit.repeat(lambda: normalize(text), number=number, repeat=7, timer=time.process_time)
    return min(runs) / number


def main() -> None:
    header = " | ".join(f"{size:>9,} chars" for size in _SIZES)
    print(f"| {'text':24} | {header} |")
    print(f"|{'-' * 26}|" + "|".join("-" * 17 for _ in _SIZES) + "|")
    for name, text in _corpus().items():
        cells = " | ".join(f"{_seconds_per_call(text[:size]) * 1e6:11.1f} µs" for size in _SIZES)
        print(f"| {name:24} | {cells} |")


if __name__ == "__main__":
    main()
