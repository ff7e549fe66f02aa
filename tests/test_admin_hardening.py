"""Admin hardening: the Open edX setup section, hostile query strings, shared helpers."""

import html
import re


def test_open_edx_setup_names_edx_own_switches(admin):
    page = admin.get("/admin/setup").get_data(as_text=True)
    section = html.unescape(page[page.index("<h2>Open edX</h2>"):])
    rows = dict(re.findall(r'<th scope="row">([^<]+)</th>\s*<td><code[^>]*>([^<]+)</code>',
                           section))
    assert rows["Tool Launch URL"] == "http://localhost/lti/launch"
    assert rows["Tool Initiate Login URL"] == "http://localhost/lti/login"
    assert rows["Tool Public Key Mode"] == "Keyset URL"
    assert rows["Tool Keyset URL"] == "http://localhost/lti/jwks"
    assert rows["Deep linking"] == "True"
    assert rows["Deep Linking Launch URL"] == "http://localhost/lti/launch"
    prose = " ".join(section.split())
    for pii in ("Request user's username", "Request user's full name",
                "Request user's email", "Course allow PII sharing in LTI flags"):
        assert pii in prose
    assert "Deployment ID</em> is always <code>1</code>" in prose
