"""A seeded, reproducible corpus of real-format FAKE credentials inside code, config and prose.

Every token has its provider's real shape (prefix, alphabet, length, GitHub/npm CRC32 checksum) but random
content, so it is no one's key. Each case records the exact character span of the secret. Hard negatives
(UUIDs, git SHAs, SHA-256 digests, base64 image data, lorem ipsum, placeholders) come with the same
templates so false positives can be counted on the same surface.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass

ALNUM = string.ascii_letters + string.digits
BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
HEX = "0123456789abcdef"
URLSAFE = ALNUM + "_-"
B64 = ALNUM + "+/"


@dataclass(frozen=True)
class Case:
    text: str
    kind: str  # provider format, or "negative:<shape>"
    start: int  # secret span (-1, -1 for negatives)
    end: int
    context: str  # code, config or prose

    @property
    def is_secret(self) -> bool:
        return self.start >= 0


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _crc_token(rng: random.Random, prefix: str) -> str:
    body = _rand(rng, ALNUM, 30)
    crc, digits = zlib.crc32(body.encode()), ""
    while crc:
        crc, r = divmod(crc, 62)
        digits = BASE62[r] + digits
    return prefix + body + digits.rjust(6, "0")


def _jwt(rng: random.Random) -> str:
    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    header = part({"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"})
    payload = part({"sub": str(rng.randrange(10**9)), "iat": rng.randrange(1_600_000_000, 1_800_000_000)})
    return f"{header}.{payload}.{_rand(rng, URLSAFE, 43)}"


def _pem(rng: random.Random) -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    body = "\n".join(_rand(rng, B64, 64) for _ in range(rng.randint(3, 8)))
    return f"-----BEGIN {kind}PRIVATE KEY-----\n{body}\n-----END {kind}PRIVATE KEY-----"


def _password(rng: random.Random) -> str:
    return _rand(rng, ALNUM + "!#%^*", rng.randint(12, 20))


# name -> (token factory, variable name used in code/config templates)
FORMATS: dict[str, tuple[Callable[[random.Random], str], str]] = {
    "aws_access_key_id": (
        lambda r: "AKIA" + _rand(r, string.ascii_uppercase + "234567", 16),
        "AWS_ACCESS_KEY_ID",
    ),
    "aws_secret_access_key": (lambda r: _rand(r, B64, 40), "AWS_SECRET_ACCESS_KEY"),
    "google_api_key": (lambda r: "AIza" + _rand(r, URLSAFE, 35), "GOOGLE_API_KEY"),
    "azure_storage_key": (lambda r: _rand(r, B64, 86) + "==", "AZURE_STORAGE_KEY"),
    "github_token": (
        lambda r: _crc_token(r, r.choice(["ghp_", "gho_", "ghs_", "ghu_", "ghr_"])),
        "GITHUB_TOKEN",
    ),
    "github_fine_grained": (lambda r: f"github_pat_{_rand(r, ALNUM, 22)}_{_rand(r, ALNUM, 59)}", "GH_TOKEN"),
    "gitlab_token": (lambda r: "glpat-" + _rand(r, URLSAFE, 20), "GITLAB_TOKEN"),
    "slack_token": (
        lambda r: f"xoxb-{_rand(r, string.digits, 12)}-{_rand(r, string.digits, 13)}-{_rand(r, ALNUM, 24)}",
        "SLACK_BOT_TOKEN",
    ),
    "slack_webhook": (
        lambda r: (
            f"https://hooks.slack.com/services/T{_rand(r, string.ascii_uppercase + string.digits, 10)}/B{_rand(r, string.ascii_uppercase + string.digits, 10)}/{_rand(r, ALNUM, 24)}"
        ),
        "SLACK_WEBHOOK_URL",
    ),
    "stripe_secret_key": (
        lambda r: r.choice(["sk_live_", "rk_live_"]) + _rand(r, ALNUM, r.choice([24, 99])),
        "STRIPE_SECRET_KEY",
    ),
    "twilio_api_key": (lambda r: "SK" + _rand(r, HEX, 32), "TWILIO_API_KEY"),
    "sendgrid_api_key": (lambda r: f"SG.{_rand(r, URLSAFE, 22)}.{_rand(r, URLSAFE, 43)}", "SENDGRID_API_KEY"),
    "mailgun_api_key": (
        lambda r: "key-" + _rand(r, string.ascii_lowercase + string.digits, 32),
        "MAILGUN_API_KEY",
    ),
    "npm_token": (lambda r: _crc_token(r, "npm_"), "NPM_TOKEN"),
    "pypi_token": (lambda r: "pypi-AgEIcHlwaS5vcmc" + _rand(r, URLSAFE, 140), "PYPI_TOKEN"),
    "discord_bot_token": (
        lambda r: (
            r.choice("MNO") + _rand(r, URLSAFE, 23) + "." + _rand(r, URLSAFE, 6) + "." + _rand(r, URLSAFE, 27)
        ),
        "DISCORD_TOKEN",
    ),
    "telegram_bot_token": (
        lambda r: f"{r.randrange(10**8, 10**10)}:AA{_rand(r, URLSAFE, 33)}",
        "TELEGRAM_BOT_TOKEN",
    ),
    "openai_api_key": (
        lambda r: f"sk-proj-{_rand(r, URLSAFE, 74)}T3BlbkFJ{_rand(r, URLSAFE, 74)}",
        "OPENAI_API_KEY",
    ),
    "anthropic_api_key": (lambda r: f"sk-ant-api03-{_rand(r, URLSAFE, 93)}AA", "ANTHROPIC_API_KEY"),
    "huggingface_token": (lambda r: "hf_" + _rand(r, string.ascii_letters, 34), "HF_TOKEN"),
    "groq_api_key": (lambda r: "gsk_" + _rand(r, ALNUM, 52), "GROQ_API_KEY"),
    "jwt": (_jwt, "ACCESS_TOKEN"),
    "private_key": (_pem, "PRIVATE_KEY"),
    "generic_password": (_password, "DB_PASSWORD"),
    "generic_api_key": (lambda r: _rand(r, ALNUM, 32), "SERVICE_API_KEY"),
}
# Formats with no distinctive prefix: only context can tell them from other random strings.
CONTEXT_ONLY = frozenset(
    {"aws_secret_access_key", "azure_storage_key", "generic_password", "generic_api_key"}
)
URL_FORMATS = {
    "database_url": ("postgres", "mysql", "mongodb+srv", "redis", "amqp"),
    "basic_auth_url": ("https",),
}

CODE = [
    '{var_lower} = "{secret}"\n',
    'client = Client(api_key="{secret}", timeout=30)\n',
    "const {var_camel} = '{secret}';\n",
    'os.environ["{var}"] = "{secret}"\n',
]
CONFIG = [
    "{var}={secret}\n",
    '{var_lower}: "{secret}"\n',
    '{{"{var_lower}": "{secret}", "region": "eu-west-1"}}\n',
    "export {var}='{secret}'\n",
]
PROSE = [
    "Hi, my deploy is failing. Here is my {var_words}: {secret} - can you see what is wrong?\n",
    "I pasted the {var_words} below so you can reproduce it:\n\n{secret}\n\nThanks!\n",
    "The {var_words} {secret} stopped working yesterday after the rotation.\n",
]
PROSE_UNLABELLED = [  # no secret word nearby: only a format rule can find these
    "Why does this fail? {secret}\n",
    "{secret}\n",
]


def _fill(template: str, var: str, secret: str) -> tuple[str, int]:
    words = var.lower().replace("_", " ")
    camel = "".join(w.capitalize() if i else w for i, w in enumerate(var.lower().split("_")))
    marker = "\x00SECRET\x00"
    text = template.format(var=var, var_lower=var.lower(), var_camel=camel, var_words=words, secret=marker)
    return text.replace(marker, secret), text.index(marker)


def _secret_cases(rng: random.Random, per_format: int) -> list[Case]:
    cases: list[Case] = []
    for kind, (factory, var) in FORMATS.items():
        for i in range(per_format):
            context = ("code", "config", "prose")[i % 3]
            pool = {"code": CODE, "config": CONFIG, "prose": PROSE}[context]
            if context == "prose" and kind not in CONTEXT_ONLY and i % 2:
                pool = PROSE_UNLABELLED
            secret = factory(rng)
            if kind == "private_key" and context != "prose":
                secret = secret.replace("\n", "\\n")  # a PEM block inside a string literal or .env value
            text, start = _fill(rng.choice(pool), var, secret)
            cases.append(Case(text, kind, start, start + len(secret), context))
    for kind, schemes in URL_FORMATS.items():
        for i in range(per_format):
            scheme = rng.choice(schemes)
            password = _password(rng).replace("#", "x").replace("%", "x")
            prefix = f"{scheme}://{rng.choice(['app', 'admin', 'svc_user'])}:"
            url = f"{prefix}{password}@{rng.choice(['db.internal', 'cluster0.example.net', '10.0.0.7'])}/main"
            context = ("code", "config", "prose")[i % 3]
            template = {
                "code": 'engine = create_engine("{secret}")\n',
                "config": "DATABASE_URL={secret}\n",
                "prose": "Connecting with {secret} times out, any idea?\n",
            }[context]
            text, start = _fill(template, "DATABASE_URL", url)
            cases.append(Case(text, kind, start + len(prefix), start + len(prefix) + len(password), context))
    return cases


def _negative_values(rng: random.Random) -> dict[str, Callable[[], str]]:
    png = base64.b64encode(bytes(rng.randrange(256) for _ in range(300))).decode()
    return {
        "uuid": lambda: str(uuid.UUID(int=rng.getrandbits(128))),
        "git_sha": lambda: hashlib.sha1(rng.randbytes(16)).hexdigest(),
        "sha256": lambda: hashlib.sha256(rng.randbytes(16)).hexdigest(),
        "data_uri": lambda: "data:image/png;base64," + png,
        "placeholder": lambda: rng.choice(
            [
                "<your-api-key>",
                "xxxxxxxxxxxxxxxxxxxx",
                "changeme",
                "${API_TOKEN}",
                "YOUR_API_KEY_HERE",
                "sk_live_xxxxxxxxxxxxxxxxxxxxxxxx",
                "********",
            ]
        ),
        "env_lookup": lambda: rng.choice(
            ["os.environ.get('API_KEY')", "process.env.TOKEN", "settings.SECRET_KEY"]
        ),
    }


# Random-looking public values go into neutral places; placeholders and lookups into secret-shaped ones.
NEUTRAL_TEMPLATES = [
    'commit = "{value}"\n',
    "checksum: {value}\n",
    'etag = "{value}"\n',
    'cache_key = "{value}"\n',
    '<img src="{value}" alt="logo">\n',
    "The request id {value} appears twice in the log.\n",
    "Fixed in {value}, see the key changes in the release notes.\n",
]
SECRET_SHAPED_TEMPLATES = [
    'api_key = "{value}"\n',
    "API_TOKEN={value}\n",
    "password: {value}\n",
    "Set your key with `export API_KEY={value}` before running.\n",
]
LOOKUP_TEMPLATES = ["api_key = {value}\n", "const token = {value};\n", "password: {value}\n"]
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip."
)


def _negative_cases(rng: random.Random, count: int) -> list[Case]:
    makers = _negative_values(rng)
    cases = [Case(LOREM + "\n", "negative:lorem", -1, -1, "prose")]
    for i in range(count):
        shape = list(makers)[i % len(makers)]
        templates = {"placeholder": SECRET_SHAPED_TEMPLATES, "env_lookup": LOOKUP_TEMPLATES}.get(
            shape, NEUTRAL_TEMPLATES
        )
        text = rng.choice(templates).format(value=makers[shape]())
        cases.append(Case(text, f"negative:{shape}", -1, -1, "code"))
    return cases


def generate(seed: int = 1337, per_format: int = 30, negatives: int = 600) -> list[Case]:
    rng = random.Random(seed)
    return _secret_cases(rng, per_format) + _negative_cases(rng, negatives)
