"""Device tokens never appear whole in logs."""


def mask_token(token: str) -> str:
    if len(token) <= 12:
        return "…" + token[-2:]
    return f"{token[:6]}…{token[-4:]}"
