"""Secret redaction: one normaliser of key spellings (snake, kebab, camel, Pascal, upper, plurals) for every writer:
records, the middleware's query strings and logwrap's echoed command line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_logging._redaction import REDACTED, is_secret_key, key_words, redact, redact_argv
from mlops_logging.fastapi import redact_query

SECRET = [
    # the shapes
    "accessToken", "clientSecret", "refreshToken", "api_keys", "secrets", "bearer", "jwt", "Authorization",
    # camelCase / PascalCase / acronyms
    "APIKey", "xApiKey", "apiKey", "ApiKey", "APIKEY", "privateKey", "idToken", "IDToken", "sessionToken",
    "secretAccessKey", "OcpApimSubscriptionKey",
    # kebab and header spellings
    "X-Auth-Token", "x-api-key", "client-secret", "set-cookie", "proxy-authorization", "X-Amz-Security-Token",
    "X-Amz-Signature", "X-CSRF-Token",
    # upper case and environment-variable spellings
    "PASSWORD", "HF_TOKEN", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD", "GITHUB_TOKEN2",
    # plurals and qualified plurals
    "passwords", "credentials", "creds", "cookies", "access_tokens", "refresh_tokens", "api_tokens", "auth_tokens",
    "apiKeys", "private_keys", "signatures", "jwts",
    # the old spellings still hold
    "token", "api_key", "apikey", "passwd", "pwd", "secret", "cookie", "credential", "auth", "basic_auth",
    "passphrase", "signature", "client_secret", "private_key", "access_token", "hf_token", "my.secret",
]
NOT_SECRET = [
    # LLM usage fields are everywhere in this stack
    "max_tokens", "prompt_tokens", "completion_tokens", "total_tokens", "num_tokens", "prompt_token_ids",
    "token_count", "tokenizer", "tokens", "maxTokens", "promptTokens", "TOTAL_TOKENS", "input_tokens",
    "output_tokens", "max_new_tokens", "eos_token", "bos_token", "pad_token", "time_to_first_token",
    "next_token", "page_token", "token_type", "token_ids",
    # identifiers, not credentials (the cookie that carries a session is redacted, its id is logged like request_id)
    "sessionId", "session_id", "request_id", "user_id", "access_key_id", "AccessKeyId", "api_key_name",
    # words that merely contain a secret word
    "key", "keys", "monkey", "keyword", "secretary_name", "author", "authority", "passage", "public_key",
    "primary_key", "cache_key", "sort_key", "message", "path", "user", "code", "status_code",
]


@pytest.mark.parametrize("key", SECRET)
def test_every_spelling_of_a_secret_key_is_secret(key: str) -> None:
    assert is_secret_key(key), key_words(key)


@pytest.mark.parametrize("key", NOT_SECRET)
def test_llm_usage_fields_and_identifiers_stay_visible(key: str) -> None:
    assert not is_secret_key(key), key_words(key)


@pytest.mark.parametrize(("key", "words"), [
    ("xApiKey", ["x", "api", "key"]), ("APIKey", ["api", "key"]), ("HF_TOKEN_2", ["hf", "token"]),
    ("X-Auth-Token", ["x", "auth", "token"]), ("prompt_token_ids", ["prompt", "token", "ids"]),
    ("IDToken", ["id", "token"]), ("clientSecret", ["client", "secret"]), ("a.b c", ["a", "b", "c"]), ("", []),
])
def test_key_words_split_every_spelling_the_same_way(key: str, words: list[str]) -> None:
    assert key_words(key) == words


WORDS = st.lists(st.sampled_from(["x", "my", "db", "openai", "user", "new"]), max_size=2)


def _spell(words: list[str], style: str) -> str:
    if style == "snake":
        return "_".join(words)
    if style == "kebab":
        return "-".join(w.capitalize() for w in words)
    if style == "upper":
        return "_".join(words).upper()
    if style == "camel":
        return words[0] + "".join(w.capitalize() for w in words[1:])
    return "".join(w.capitalize() for w in words)  # Pascal


STYLES = st.sampled_from(["snake", "kebab", "upper", "camel", "pascal"])
SECRET_TAILS = st.sampled_from([["api", "key"], ["access", "token"], ["client", "secret"], ["password"],
                                ["refresh", "tokens"], ["private", "key"], ["jwt"], ["bearer"], ["credentials"]])
PLAIN_TAILS = st.sampled_from([["max", "tokens"], ["prompt", "tokens"], ["token", "count"], ["tokenizer"],
                               ["prompt", "token", "ids"], ["session", "id"], ["public", "key"], ["total", "tokens"]])


@given(WORDS, SECRET_TAILS, STYLES)
def test_a_secret_stays_secret_whatever_the_spelling_and_prefix(prefix: list[str], tail: list[str], style: str) -> None:
    assert is_secret_key(_spell(prefix + tail, style))


@given(WORDS, PLAIN_TAILS, STYLES)
def test_a_usage_field_stays_visible_whatever_the_spelling_and_prefix(prefix: list[str], tail: list[str],
                                                                       style: str) -> None:
    assert not is_secret_key(_spell(prefix + tail, style))


@given(st.text())
def test_the_verdict_depends_only_on_the_words(key: str) -> None:
    assert is_secret_key(key) == is_secret_key("_".join(key_words(key)))


def test_header_pairs_are_redacted_as_lists_tuples_and_asgi_bytes() -> None:
    record = {
        "headers": [("authorization", "Bearer abc"), ("accept", "json")],
        "scope_headers": [(b"cookie", b"session=1"), (b"user-agent", b"curl")],
        "as_tuple": (("X-Api-Key", "k"), ("host", "h")),
        "nested": {"raw": [["set-cookie", "a=b"]]},
        "vector": [0.1, 0.2],
        "pairs_of_numbers": [(1, 2), (3, 4)],
    }
    redact(record)
    assert record["headers"] == [("authorization", REDACTED), ("accept", "json")]
    assert record["scope_headers"] == [(b"cookie", REDACTED), (b"user-agent", b"curl")]
    assert record["as_tuple"] == (("X-Api-Key", REDACTED), ("host", "h"))
    assert record["nested"] == {"raw": [("set-cookie", REDACTED)]}
    assert record["vector"] == [0.1, 0.2] and record["pairs_of_numbers"] == [(1, 2), (3, 4)]


def test_camel_case_and_plural_keys_are_redacted_in_records_and_nested_mappings() -> None:
    record = {"accessToken": "t", "api_keys": ["a", "b"], "usage": {"prompt_tokens": 5, "clientSecret": "s"},
              "max_tokens": 16, "bearer": "b"}
    redact(record)
    assert record == {"accessToken": REDACTED, "api_keys": REDACTED, "usage": {"prompt_tokens": 5,
                      "clientSecret": REDACTED}, "max_tokens": 16, "bearer": REDACTED}


@pytest.mark.parametrize(("query", "expected"), [
    ("accessToken=a&x=1", "accessToken=[REDACTED]&x=1"),
    ("jwt=e.y.j&code=oauth-code&state=s", "jwt=[REDACTED]&code=[REDACTED]&state=s"),
    ("authorization_code=c&device_code=d&status_code=200", ("authorization_code=[REDACTED]&device_code=[REDACTED]"
                                                             "&status_code=200")),
    ("X-Amz-Signature=s&X-Amz-Credential=c&X-Amz-Date=d", ("X-Amz-Signature=[REDACTED]&X-Amz-Credential=[REDACTED]"
                                                           "&X-Amz-Date=d")),
    ("apiKey=k&maxTokens=5&key=AIza", "apiKey=[REDACTED]&maxTokens=5&key=[REDACTED]"),
])
def test_query_strings_use_the_same_normaliser_plus_url_only_names(query: str, expected: str) -> None:
    assert redact_query(query) == expected


def test_logwraps_echoed_command_line_uses_the_same_normaliser() -> None:
    argv = ["serve", "--apiKey", "k1", "--hf-token=k2", "OPENAI_API_KEY=k3", "X-Auth-Token: k4", "--max-tokens", "9"]
    assert redact_argv(argv) == ["serve", "--apiKey", REDACTED, f"--hf-token={REDACTED}", f"OPENAI_API_KEY={REDACTED}",
                                 f"X-Auth-Token: {REDACTED}", "--max-tokens", "9"]


# --- logwrap's echoed command line: every form a secret takes there (#16) -------------------------------------------

R = REDACTED


@pytest.mark.parametrize(("argv", "expected"), [
    # several values of one flag (vLLM's --api-key takes several keys), up to the next option
    (["vllm", "serve", "m", "--api-key", "k1", "k2"], ["vllm", "serve", "m", "--api-key", R, R]),
    (["vllm", "serve", "--api-key", "k1", "k2", "--port", "8000"],
     ["vllm", "serve", "--api-key", R, R, "--port", "8000"]),
    # abbreviations argparse accepts, with a space or '='
    (["vllm", "--api-k", "k1", "--hf-tok", "t1", "--hf-tok=t2", "--api=k3", "--pass", "p1"],
     ["vllm", "--api-k", R, "--hf-tok", R, f"--hf-tok={R}", f"--api={R}", "--pass", R]),
    # a secret inside one shell string (sh -c, bash -lc, su -c, env -S): flags, assignments, export, headers
    (["sh", "-c", "vllm serve m --api-key k1 k2 --port 8000"],
     ["sh", "-c", f"vllm serve m --api-key {R} {R} --port 8000"]),
    (["bash", "-lc", "export HF_TOKEN=t1; exec vllm --hf-token=t2 && curl -H 'Authorization: Bearer t3' h"],
     ["bash", "-lc", f"export HF_TOKEN={R}; exec vllm --hf-token={R} && curl -H 'Authorization: {R}' h"]),
    (["env", "-S", "python x.py --token=\"a b\" --port 1"], ["env", "-S", f"python x.py --token={R} --port 1"]),
    (["env", "-S", "OPENAI_API_KEY=k1 python x.py"], ["env", "-S", f"OPENAI_API_KEY={R} python x.py"]),
    (["sh", "-c", "curl https://h/p?a=1&sig=s1 && HF_TOKEN=t1 vllm"],
     ["sh", "-c", f"curl https://h/p?a=1&sig={R} && HF_TOKEN={R} vllm"]),
    # anywhere else a word that starts as a secret assignment or header is hidden whole: its value may hold spaces
    (["env", "PASSWORD=correct horse battery", "cmd"], ["env", f"PASSWORD={R}", "cmd"]),
    # curl's user:password, and a token as the user name of an HTTP URL (a group after a colon is no password)
    (["curl", "-u", "me:p1", "--user=me:p2", "https://ghp_t1@github.com/o/r.git"],
     ["curl", "-u", f"me:{R}", f"--user=me:{R}", f"https://{R}@github.com/o/r.git"]),
    (["docker", "run", "-u", "0:0", "ssh://git@h/r"], ["docker", "run", "-u", "0:0", "ssh://git@h/r"]),
    (["sh", "-c", "sh -c 'vllm --api-key k1'"], ["sh", "-c", f"sh -c 'vllm --api-key {R}'"]),
    # URL query parameters and fragments, bare or as a flag's value
    (["curl", "https://h/p?api_key=k1&token=t1&sig=s1&n=1"],
     ["curl", f"https://h/p?api_key={R}&token={R}&sig={R}&n=1"]),
    (["x", "--url=https://h/cb#access_token=t1&state=s", "https://h/?key=k1"],
     ["x", f"--url=https://h/cb#access_token={R}&state=s", f"https://h/?key={R}"]),
    # headers, as their own word or as a flag's value
    (["curl", "--header=Authorization: Bearer t1", "-H", "X-Api-Key: k1", "--header", "Cookie: a=b"],
     ["curl", f"--header=Authorization: {R}", "-H", f"X-Api-Key: {R}", "--header", f"Cookie: {R}"]),
    # URL passwords, also with an '@' inside
    (["mlflow", "server", "--backend-store-uri", "postgresql://u:p@ss@db:5432/m"],
     ["mlflow", "server", "--backend-store-uri", f"postgresql://u:{R}@db:5432/m"]),
    # JSON options (vLLM's --hf-overrides, --kv-transfer-config, ...)
    (["vllm", "--hf-overrides", '{"token": "t1", "max_tokens": 5}'],
     ["vllm", "--hf-overrides", '{"token":"[REDACTED]","max_tokens":5}']),
    (["x", "--cfg", "{'api_key': 'k 1', 'n': 1}", "--y", "{token: t1, max_tokens: 5}"],  # a Python dict, YAML
     ["x", "--cfg", f"{{'api_key': {R}, 'n': 1}}", "--y", f"{{token: {R}, max_tokens: 5}}"]),
    # what was redacted before stays redacted
    (["x", "HF_TOKEN=t2", "--api-key=k1", "--token", "t1", "--password", "p1", "--client-secret", "c1",
      "-Dfoo.password=p2"],
     ["x", f"HF_TOKEN={R}", f"--api-key={R}", "--token", R, "--password", R, "--client-secret", R,
      f"-Dfoo.password={R}"]),
    # a secret option's values run to the next option or to a word hidden by its own name; a key may end in '='
    (["x", "--api-key", "k1", "k2==", "HF_TOKEN=t2", "k3", "-v"],
     ["x", "--api-key", R, R, f"HF_TOKEN={R}", "k3", "-v"]),
])
def test_every_form_of_a_secret_on_a_command_line_is_hidden_and_the_flag_names_stay(argv: list[str],
                                                                                     expected: list[str]) -> None:
    assert redact_argv(argv) == expected


@pytest.mark.parametrize("argv", [
    ["vllm", "serve", "Qwen/Qwen2", "--max-tokens", "5", "--max-tok", "6", "--tokenizer", "t", "--port", "8000",
     "--seed", "1", "--served-model-name", "m", "--ssl-keyfile", "k.pem", "--sort-key", "name", "-p", "9"],
    ["sh", "-c", "echo hello world; ls -l /tmp | wc -l"],
    ["python", "-c", "print('a b')"],
    ["curl", "https://h/p?n=1&max_tokens=5", "--data", "{not json"],
])
def test_a_command_line_without_secrets_is_left_as_it_is(argv: list[str]) -> None:
    assert redact_argv(argv) == argv


SECRET_FLAGS = st.sampled_from(["--api-key", "--api-k", "--hf-token", "--hf-tok", "--token", "--password", "--pass",
                                "--client-secret", "--access-token", "--auth-token", "--secret"])
SECRET_VALUES = st.text("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.", min_size=6,
                        max_size=30).map(lambda s: "Zq9" + s)
FORMS = st.sampled_from(["space", "equals", "shell", "shell-equals", "many"])


@given(SECRET_FLAGS, st.lists(SECRET_VALUES, min_size=1, max_size=3), FORMS)
def test_a_secret_flags_values_never_show_in_any_form(flag: str, values: list[str], form: str) -> None:
    if form == "space":
        argv = ["prog", flag, values[0], "--port", "1"]
    elif form == "equals":
        argv = ["prog", f"{flag}={values[0]}", "--port", "1"]
    elif form == "shell":
        argv = ["sh", "-c", f"prog {flag} {values[0]} --port 1"]
    elif form == "shell-equals":
        argv = ["sh", "-c", f"prog {flag}='{values[0]}' --port 1"]
    else:
        argv = ["prog", flag, *values, "--port", "1"]
    shown = " ".join(redact_argv(argv))
    assert not [v for v in values if v in shown]
    assert flag in shown and "--port 1" in shown
