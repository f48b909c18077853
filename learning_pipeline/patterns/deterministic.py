"""A pattern built from the event's own text, without any model: the default on a laptop and the
fallback when the LLM is down or answers nonsense. Same event in, same pattern out (no randomness,
no set iteration order, no clock).

| field | from |
|---|---|
| `name` | the key words of the question's first sentence (stop words dropped), at most 6, snake_case; a known technology from the question is put first when none of the 6 is one |
| `description` | the question's first sentence as "How to ..." (how do I / can you / please / I want to / what's the best way to ...), "Solve: ..." (other questions), or as written (statements); the answer's first sentence when the question says too little |
| `steps` | the answer's numbered list (else its top-level bullets; an item ending in `:` gets its short code block appended), else its shell commands (`$ cmd` lines, lines of ```bash/sh/shell/zsh blocks) as "Run `cmd`", else its sentences (max 8) |
| `prerequisites` | technologies: known words in the question, languages of `files_modified` extensions, known words in the answer, then `tools_used` (max 8) |
| `tags` | the source, meaningful words of the event type, technologies (max 4), key words; max 10 |
| `example` | the answer's first fenced code block, else its first shell command, else "" |

The vocabulary of technologies (`TECH`) is deliberately compact: words that name a platform, tool or
language unambiguously in a developer's question.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from typing import Any

from learning_pipeline.patterns.schema import MAX_TAGS, Pattern, slugify

MAX_NAME_WORDS = 6
MAX_SENTENCE_STEPS = 8
MAX_LIST_STEPS = 15
MAX_PREREQUISITES = 8
MAX_TECH_TAGS = 4
MAX_EXAMPLE_CHARS = 2000

STOP_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "then",
        "else",
        "so",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "into",
        "onto",
        "about",
        "over",
        "under",
        "via",
        "i",
        "me",
        "my",
        "mine",
        "we",
        "us",
        "our",
        "you",
        "your",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "done",
        "how",
        "what",
        "why",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "whose",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "please",
        "help",
        "hi",
        "hello",
        "hey",
        "thanks",
        "thank",
        "just",
        "also",
        "very",
        "really",
        "some",
        "any",
        "all",
        "each",
        "get",
        "gets",
        "got",
        "getting",
        "have",
        "has",
        "had",
        "having",
        "need",
        "needs",
        "want",
        "wants",
        "wanted",
        "trying",
        "try",
        "tried",
        "tries",
        "way",
        "ways",
        "thing",
        "things",
        "something",
        "anything",
        "someone",
        "using",
        "use",
        "used",
        "make",
        "makes",
        "made",
        "let",
        "lets",
        "like",
        "able",
        "not",
        "no",
        "yes",
        "one",
        "ok",
        "okay",
        "again",
        "still",
        "now",
        "such",
        "show",
        "tell",
        "explain",
        "out",
        "currently",
        "properly",
        "correctly",
        "actually",
        "even",
        "else",
        "without",
        "i'm",
        "i've",
        "i'd",
        "it's",
        "don't",
        "doesn't",
        "didn't",
        "can't",
        "cannot",
        "won't",
        "isn't",
        "aren't",
        "what's",
        "how's",
        "there's",
    ]
)

# tag -> (display name, words that name it)
_TECH_SPEC: dict[str, tuple[str, str]] = {
    "nixos": ("NixOS", "nixos nixos-rebuild configuration.nix hardware-configuration.nix"),
    "nix": (
        "Nix",
        "nix nixpkgs flake flakes flake.nix nix-shell nix-env nix-build home-manager shell.nix default.nix",
    ),
    "docker": ("Docker", "docker dockerfile docker-compose docker-compose.yml compose.yaml"),
    "podman": ("Podman", "podman"),
    "kubernetes": ("Kubernetes", "kubernetes k8s kubectl k3s"),
    "helm": ("Helm", "helm"),
    "postgres": ("PostgreSQL", "postgres postgresql psql pg_dump"),
    "mysql": ("MySQL", "mysql mariadb"),
    "sqlite": ("SQLite", "sqlite sqlite3"),
    "redis": ("Redis", "redis"),
    "qdrant": ("Qdrant", "qdrant"),
    "python": ("Python", "python python3 pip pip3 venv virtualenv pyproject.toml requirements.txt asyncio"),
    "pytest": ("pytest", "pytest"),
    "javascript": ("JavaScript", "javascript node nodejs node.js npm npx yarn pnpm package.json"),
    "typescript": ("TypeScript", "typescript tsc tsconfig.json"),
    "rust": ("Rust", "rust cargo rustc cargo.toml"),
    "go": ("Go", "golang go.mod"),
    "java": ("Java", "java maven gradle jvm"),
    "git": ("Git", "git github gitlab .gitignore"),
    "systemd": ("systemd", "systemd systemctl journalctl"),
    "nginx": ("nginx", "nginx"),
    "caddy": ("Caddy", "caddy"),
    "ssh": ("SSH", "ssh sshd ssh-keygen ssh-agent"),
    "bash": ("Bash", "bash zsh shell"),
    "linux": ("Linux", "linux ubuntu debian fedora"),
    "gnome": ("GNOME", "gnome gnome-keyring"),
    "wayland": ("Wayland", "wayland"),
    "pam": ("PAM", "pam"),
    "cuda": ("CUDA", "cuda nvidia"),
    "pytorch": ("PyTorch", "pytorch torch"),
    "llama-cpp": ("llama.cpp", "llama.cpp llama-server llama-cpp"),
    "ollama": ("Ollama", "ollama"),
    "vllm": ("vLLM", "vllm"),
    "dagster": ("Dagster", "dagster"),
    "pandas": ("pandas", "pandas"),
    "numpy": ("NumPy", "numpy"),
    "fastapi": ("FastAPI", "fastapi"),
    "django": ("Django", "django"),
    "flask": ("Flask", "flask"),
    "react": ("React", "react jsx"),
    "terraform": ("Terraform", "terraform"),
    "ansible": ("Ansible", "ansible"),
    "aws": ("AWS", "aws ec2"),
    "sql": ("SQL", "sql"),
    "tls": ("TLS", "tls ssl openssl letsencrypt"),
    "cron": ("cron", "cron crontab"),
    "vim": ("Vim", "vim neovim nvim"),
    "vscode": ("VS Code", "vscode"),
}
TECH: dict[str, str] = {alias: tag for tag, (_, words) in _TECH_SPEC.items() for alias in words.split()}
TECH_DISPLAY: dict[str, str] = {tag: display for tag, (display, _) in _TECH_SPEC.items()}

EXTENSION_LANGUAGES = {
    ".py": "python",
    ".pyi": "python",
    ".nix": "nix",
    ".rs": "rust",
    ".go": "go",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".sql": "sql",
    ".java": "java",
    ".service": "systemd",
    ".tf": "terraform",
    ".rb": "ruby",
    ".lua": "lua",
    ".c": "c",
    ".h": "c",
    ".cpp": "c++",
    ".hpp": "c++",
    ".cc": "c++",
}
FILE_NAMES = {
    "dockerfile": "docker",
    "configuration.nix": "nixos",
    "flake.nix": "nix",
    "cargo.toml": "rust",
    "package.json": "javascript",
    "pyproject.toml": "python",
    "go.mod": "go",
}
_GENERIC_EVENT_WORDS = frozenset(
    [
        "event",
        "events",
        "unknown",
        "query",
        "queries",
        "completion",
        "completed",
        "complete",
        "task",
        "tasks",
        "response",
        "request",
        "success",
        "succeeded",
        "done",
        "interaction",
        "message",
        "chat",
        "result",
        "results",
        "log",
    ]
)
_SHELL_LANGS = frozenset({"bash", "sh", "shell", "zsh", "console", "shell-session", "terminal", "fish"})
_PROMPT_LANGS = frozenset({"console", "shell-session", "terminal"})

_FENCE_RE = re.compile(
    r"^[ \t]*```[ \t]*([A-Za-z0-9_+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)
_NUMBERED_RE = re.compile(r"^(\s*)(?:step\s+)?\d{1,3}[.)]\s+(.*\S)", re.IGNORECASE)
_BULLET_RE = re.compile(r"^(\s*)[-*\u2022+]\s+(.*\S)")
_DOLLAR_RE = re.compile(r"^\s*\$\s+(\S.*?)\s*$")
_WORD_RE = re.compile(r"[a-z][a-z0-9+#]*(?:[.'_-][a-z0-9+#]+)*|\b\d{3,}\b")
_TOKEN_RE = re.compile(r"[a-z0-9.][a-z0-9+#_.-]*[a-z0-9+#]|[a-z0-9]")
_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.?!])\s+(?=[A-Z0-9`\"'(])|\n+")
_PATHLIKE_RE = re.compile(r"\S*[/\\]\S*|https?://\S+")
_MD_EMPHASIS_RE = re.compile(r"(\*\*|__)(.+?)\1")
_HAS_LETTER = re.compile(r"[A-Za-z]")
_MY_RE = re.compile(r"\bmy\b", re.IGNORECASE)
_GREETING_RE = re.compile(r"^(?:hi|hello|hey)\b[\s,!.]*", re.IGNORECASE)
_HOW_RE = re.compile(
    r"^(?:"
    r"how\s+(?:do|can|could|would|should|shall|might)\s+(?:i|we|you|one)\s+"
    r"|how\s+to\s+"
    r"|(?:what(?:'s|\s+is)|which\s+is)\s+(?:the\s+)?(?:best|right|correct|proper|recommended|easiest|simplest)\s+way\s+to\s+"
    r"|(?:please\s+)?(?:(?:can|could|would)\s+you\s+(?:please\s+)?)?"
    r"(?:help\s+me\s+(?:to\s+)?|(?:show|tell)\s+me\s+how\s+to\s+|explain\s+how\s+to\s+)"
    r"|(?:please\s+)?(?:can|could|would)\s+you\s+(?:please\s+)?"
    r"|please\s+"
    r"|i\s+(?:want|need|would\s+like|'d\s+like|am\s+trying|'m\s+trying)\s+to\s+"
    r")",
    re.IGNORECASE,
)
_QUESTION_START_RE = re.compile(
    r"^(?:why|what|when|where|which|who|is|are|does|do|did|can|could|should|would|will|has|have)\b",
    re.IGNORECASE,
)


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def event_text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    return "" if _missing(value) else str(value).strip()


def event_flag(event: dict[str, Any], key: str) -> bool:
    """A bool column as a Python bool: numpy/pandas booleans count (`np.True_ is True` is False); missing is False."""
    value = event.get(key)
    if _missing(value):
        return False
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def event_list(event: dict[str, Any], key: str) -> list[str]:
    """A list column as a list of strings, whatever pandas/pyarrow made of it (list, tuple, ndarray)."""
    value = event.get(key)
    if value is None or (not hasattr(value, "__iter__") and _missing(value)):
        return []
    if isinstance(value, str):
        return [value] if value.strip() else []
    try:
        return [str(v).strip() for v in value if not _missing(v) and str(v).strip()]
    except TypeError:
        return []


def _code_blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1).lower(), m.group(2).rstrip()) for m in _FENCE_RE.finditer(text)]


def _strip_code(text: str) -> str:
    return _FENCE_RE.sub("\n", text)


def _iter_sentences(text: str) -> Iterator[str]:
    start = 0
    for m in _SENTENCE_SPLIT_RE.finditer(text):
        yield from _clean_sentence(text[start : m.start()])
        start = m.end()
    yield from _clean_sentence(text[start:])


def _clean_sentence(raw: str) -> Iterator[str]:
    s = raw.strip().lstrip("#>").strip()
    if s[:1] in ("-", "*", "+", "\u2022"):
        s = _BULLET_RE.sub(r"\2", s)
    if "**" in s or "__" in s:
        s = _MD_EMPHASIS_RE.sub(r"\2", s)
    if s:
        yield s


def _sentences(text: str) -> list[str]:
    return list(_iter_sentences(text))


def _first_sentence(text: str) -> str:
    if "```" in text:
        text = _strip_code(text)
    return next((s for s in _iter_sentences(text) if _HAS_LETTER.search(s)), "")


def _tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def _tech_in(text: str) -> list[str]:
    found: dict[str, None] = {}
    for token in _tokens(text):
        tag = TECH.get(token)
        if tag:
            found.setdefault(tag)
        elif "." in token or "-" in token:  # services.gnome.gnome-keyring.enable, gnome-keyring-daemon
            for part in token.split("."):
                tag = TECH.get(part) or next((TECH[p] for p in part.split("-") if p in TECH), None)
                if tag:
                    found.setdefault(tag)
    return list(found)


def _key_words(text: str) -> list[str]:
    cleaned = _PATHLIKE_RE.sub(" ", _strip_code(text).lower()).replace("`", " ")
    words: dict[str, None] = {}
    for w in _WORD_RE.findall(cleaned):
        w = w.strip("'")
        if len(w) < 2 or w in STOP_WORDS:
            continue
        words.setdefault(w)
    return list(words)


def _name(query: str, response: str, event: dict[str, Any]) -> str:
    first = _first_sentence(query) if query else ""
    first = _GREETING_RE.sub("", first)
    if (m := _HOW_RE.match(first)) and len(first) > m.end():
        first = first[m.end() :]
    words = _key_words(first)
    if len(words) < 2 and query:
        words = _key_words(query)
    if len(words) < 2 and response:
        words = list(dict.fromkeys(words + _key_words(_first_sentence(response))))
    chosen = words[:MAX_NAME_WORDS]
    tech = _tech_in(first or query)
    if tech and not any(TECH.get(w) for w in chosen):
        chosen = [tech[0], *chosen][:MAX_NAME_WORDS]
    name = slugify("_".join(w.replace("-", "_").replace(".", "_") for w in chosen))
    if len(name) < 3:
        seed = event_text(event, "event_id") or hashlib.sha256((query + response).encode()).hexdigest()
        name = f"pattern_{seed[:12]}"
    return name


def _description(query: str, response: str) -> str:
    first = _GREETING_RE.sub("", _first_sentence(query)).strip() if query else ""
    desc = ""
    if len(first.split()) >= 3:
        m = _HOW_RE.match(first)
        if m and len(first) > m.end():
            rest = first[m.end() :].strip().rstrip("?.!").strip()
            rest = _MY_RE.sub("the", rest)
            desc = f"How to {rest}"
        elif first.endswith("?") or _QUESTION_START_RE.match(first):
            rest = _MY_RE.sub("the", first.rstrip("?").strip())
            desc = f"Solve: {rest[0].lower()}{rest[1:]}"
        else:
            desc = first[0].upper() + first[1:]
    if not desc:
        desc = _first_sentence(response) or first or "Reusable pattern from an interaction"
    desc = " ".join(desc.split())
    return desc if len(desc) <= 240 else desc[:239].rsplit(" ", 1)[0] + "…"


def _clean_item(text: str) -> str:
    text = _MD_EMPHASIS_RE.sub(r"\2", text).strip()
    return text[:300]


def _list_steps(response: str) -> list[str]:
    """Top-level numbered items (else bullets); an item ending in ':' absorbs its short code block."""
    numbered: list[tuple[int, str]] = []
    bullets: list[tuple[int, str]] = []
    last: list[tuple[int, str]] | None = None
    in_code, code_lines = False, []
    for line in response.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            if in_code:
                in_code = False
                code = [c.strip() for c in code_lines if c.strip()]
                if last and last[-1][1].endswith(":") and 0 < len(code) <= 3 and sum(map(len, code)) <= 200:
                    indent, text = last[-1]
                    last[-1] = (indent, f"{text} `{' '.join(code)}`")
            else:
                in_code, code_lines = True, []
            continue
        if in_code:
            code_lines.append(line)
            continue
        if m := _NUMBERED_RE.match(line):
            numbered.append((len(m.group(1).expandtabs()), _clean_item(m.group(2))))
            last = numbered
        elif m := _BULLET_RE.match(line):
            bullets.append((len(m.group(1).expandtabs()), _clean_item(m.group(2))))
            last = bullets
        elif stripped:
            last = None
    items = numbered if len(numbered) >= 2 or not bullets else bullets
    if not items:
        return []
    top = min(indent for indent, _ in items)
    steps = [
        text.rstrip(":").strip() if text.endswith(":") else text for indent, text in items if indent == top
    ]
    return [s for s in steps if s][:MAX_LIST_STEPS]


def _commands(response: str) -> list[str]:
    cmds: dict[str, None] = {}
    for line in _strip_code(response).splitlines():
        if m := _DOLLAR_RE.match(line):
            cmds.setdefault(m.group(1))
    for lang, body in _code_blocks(response):
        prompt_only = lang in _PROMPT_LANGS or not lang
        if lang not in _SHELL_LANGS and lang:
            continue
        for line in body.splitlines():
            if m := _DOLLAR_RE.match(line):
                cmds.setdefault(m.group(1))
            elif not prompt_only and line.strip() and not line.strip().startswith("#"):
                cmds.setdefault(line.strip())
    return list(cmds)


def _steps(query: str, response: str, description: str) -> list[str]:
    if response:
        steps = _list_steps(response)
        if steps:
            return steps
        cmds = _commands(response)
        if cmds:
            return [f"Run `{c}`" for c in cmds[:MAX_LIST_STEPS]]
        prose = [s for s in _sentences(_strip_code(response)) if len(s.split()) >= 3]
        if prose:
            return [s[:300] for s in prose[:MAX_SENTENCE_STEPS]]
    return [description]


def _example(response: str) -> str:
    blocks = [body.strip() for _, body in _code_blocks(response) if body.strip()]
    if blocks:
        return blocks[0][:MAX_EXAMPLE_CHARS]
    cmds = _commands(response)
    return cmds[0] if cmds else ""


def _file_languages(files: list[str]) -> list[str]:
    found: dict[str, None] = {}
    for f in files:
        base = re.split(r"[/\\]", f)[-1].lower()
        if base in FILE_NAMES:
            found.setdefault(FILE_NAMES[base])
        dot = base.rfind(".")
        if dot > 0 and base[dot:] in EXTENSION_LANGUAGES:
            found.setdefault(EXTENSION_LANGUAGES[base[dot:]])
    return list(found)


def deterministic_pattern(event: dict[str, Any]) -> Pattern:
    """The pattern of one canonical event (a dict with the `telemetry/schema.py` columns)."""
    query = event_text(event, "query")
    response = event_text(event, "response")
    if not query and not response:
        raise ValueError(f"event {event_text(event, 'event_id') or '?'} has neither query nor response text")

    query_tech = _tech_in(query)
    file_tech = _file_languages(event_list(event, "files_modified"))
    response_tech = _tech_in(response)
    tech = list(dict.fromkeys(query_tech + file_tech + response_tech))
    tools = event_list(event, "tools_used")

    prerequisites: dict[str, None] = {}
    for tag in tech:
        prerequisites.setdefault(TECH_DISPLAY.get(tag, tag))
    for tool in tools:
        tag = TECH.get(tool.lower())
        prerequisites.setdefault(TECH_DISPLAY[tag] if tag else tool)

    description = _description(query, response)
    name = _name(query, response, event)

    tags: list[str] = []
    source = event_text(event, "source").lower()
    if source:
        tags.append(source)
    for word in re.split(r"[^a-z0-9]+", event_text(event, "event_type").lower()):
        if len(word) >= 3 and word not in _GENERIC_EVENT_WORDS:
            tags.append(word)
    tags.extend(tech[:MAX_TECH_TAGS])
    key_source = _first_sentence(query) if query else _first_sentence(response)
    tags.extend(_key_words(key_source))
    tags = list(dict.fromkeys(tags))[:MAX_TAGS]

    return Pattern(
        name=name,
        description=description,
        prerequisites=list(prerequisites)[:MAX_PREREQUISITES],
        steps=_steps(query, response, description),
        tags=tags,
        example=_example(response),
    )
