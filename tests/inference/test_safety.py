"""Link safety: a URL is judged by the host a browser would contact (WHATWG URL rules), so
no parser disagreement lets an image or link carry answer data to a host off the
allowlist (issue 14, defect 5)."""

from __future__ import annotations

import re

import pytest

from inference.safety import LinkPolicy, StreamSanitizer, sanitize

ALLOWLIST = ["docs.example.com"]

# URLs that stay: each names an allowed host, plainly.
ALLOWED = [
    "https://docs.example.com/p.png",
    "http://docs.example.com",
    "https://sub.docs.example.com/guide?x=1#top",
    "https://DOCS.Example.COM/case-insensitive",
    "https://docs.example.com:8443/with-port",
    "https://docs.example.com./trailing-dot",
]

# URLs that go: each reaches (or may reach) a host off the allowlist in some browser or
# renderer, or hides its host behind an encoding.
REJECTED = {
    "backslash before userinfo (the probe)": "https://evil.test\\@docs.example.com/p.png?d=SECRET",
    "backslash as the scheme's slashes": "https:\\\\evil.test\\docs.example.com/p.png",
    "mixed slash and backslash": "https:/\\evil.test/docs.example.com",
    "userinfo naming the allowed host": "https://docs.example.com@evil.test/p.png",
    "userinfo with a password": "https://docs.example.com:x@evil.test/p.png",
    "userinfo on the allowed host": "https://evil.test@docs.example.com/p.png",
    "percent-encoded backslash in userinfo": "https://evil.test%5C@docs.example.com/p.png",
    "fragment before the allowed host": "https://evil.test#@docs.example.com/p.png",
    "query before the allowed host": "https://evil.test?@docs.example.com/p.png",
    "percent-encoded host": "https://docs%2eexample%2ecom/p.png",
    "percent-encoded at sign in the host": "https://evil%2etest%40docs.example.com/",
    "percent-encoded dot into another domain": "https://docs.example.com%2eevil.test/p.png",
    "encoded NUL in the host": "https://docs.example.com%00.evil.test/p.png",
    "entity-encoded at sign": "https://docs.example.com&#64;evil.test/p.png",
    "entity-encoded backslash": "https://evil.test&#92;@docs.example.com/p.png",
    "protocol-relative": "//evil.test/docs.example.com/p.png",
    "path-relative with backslash": "/\\evil.test/p.png",
    "scheme without slashes": "https:evil.test/p.png",
    "allowed host as a prefix": "https://docs.example.com.evil.test/p.png",
    "allowed host as a suffix without a dot": "https://evildocs.example.com/p.png",
    "homograph (Cyrillic e)": "https://docs.\u0435xample.com/p.png",
    "fullwidth letters": "https://\uff44\uff4f\uff43\uff53.example.com/p.png",
    "punycode host": "https://xn--docs-9ta.example.com/p.png",
    "hexadecimal IPv4": "https://0x7f.1/p.png",
    "IPv6 loopback": "https://[::1]/p.png",
    "tab inside the host": "https://evil.te\tst/docs.example.com",
    "newline inside the host": "https://evil.te\nst/docs.example.com",
    "javascript scheme": "javascript:alert(document.domain)//docs.example.com",
    "javascript scheme, odd case": "JaVaScRiPt:fetch('//evil.test')",
    "data URL": "data:image/png;base64,iVBORw0KGgo=",
    "ftp scheme": "ftp://docs.example.com/p.png",
    "no host at all": "https:///p.png",
    "empty": "",
}


@pytest.mark.parametrize("url", ALLOWED)
def test_urls_on_the_allowlist_stay(url):
    policy = LinkPolicy(allowlist=ALLOWLIST)
    assert policy.allows(url, image=True)
    assert policy.allows(url)
    text = f"See ![chart]({url}) and [the guide]({url})."
    assert sanitize(text, policy).text == text


@pytest.mark.parametrize("url", list(REJECTED.values()), ids=list(REJECTED))
def test_urls_that_a_browser_reads_differently_are_refused(url):
    policy = LinkPolicy(allowlist=ALLOWLIST)
    assert not policy.allows(url, image=True)
    assert not policy.allows(url)


@pytest.mark.parametrize(
    "url",
    [u for u in REJECTED.values() if u and not any(c in u for c in " \t\n()<>")],
    ids=[k for k, u in REJECTED.items() if u and not any(c in u for c in " \t\n()<>")],
)
def test_images_and_links_to_refused_urls_are_removed_from_answers(url):
    policy = LinkPolicy(allowlist=ALLOWLIST)
    forms = [f"Done [1]. ![x]({url})", f'Done [1]. <img src="{url}">', f"Done [1]. [click]({url})"]
    if re.match(r"[a-zA-Z][a-zA-Z0-9+.-]*:", url):  # an autolink needs a scheme
        forms.append(f"Done [1]. <{url}>")
    for text in forms:
        cleaned = sanitize(text, policy).text
        assert "evil" not in cleaned and "SECRET" not in cleaned, (text, cleaned)
        assert cleaned.startswith("Done [1].")


def test_the_probed_image_never_reaches_a_streamed_answer():
    probe = "Done [1]. ![x](https://evil.test\\@docs.example.com/p.png?d=SECRET) More."
    sanitizer = StreamSanitizer(LinkPolicy(allowlist=ALLOWLIST))
    streamed = "".join(sanitizer.feed(ch) for ch in probe) + sanitizer.flush()
    assert streamed == "Done [1].  More."
    assert sanitizer.removed == 1


def test_a_link_the_passages_quote_is_kept_but_only_in_plain_form():
    quoted = "Read https://other.example.net/paper.pdf for the method."
    policy = LinkPolicy(allowlist=ALLOWLIST, quoted=quoted)
    assert policy.allows("https://other.example.net/paper.pdf")
    assert not policy.allows("https://other.example.net/paper.pdf", image=True)
    # Quoting the document is no licence for a disguised host.
    assert not policy.allows("https://evil.test\\@other.example.net/paper.pdf")


def test_an_allowlist_entry_may_be_written_as_a_url():
    policy = LinkPolicy(allowlist=["https://Docs.Example.com/"])
    assert policy.allows("https://docs.example.com/p.png", image=True)
    assert not policy.allows("https://evil.test\\@docs.example.com/p.png", image=True)
