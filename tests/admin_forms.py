"""Build the POST data an admin change form would submit, from the page the admin rendered.

Tests then change only what a person would change, so every other field (and each inline's
management form) round-trips exactly as the browser would send it.
"""

from typing import Any

from django.forms import BaseForm


def _form_values(form: BaseForm) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for bound in form:
        value = bound.value()
        if isinstance(value, bool):
            # An unticked checkbox is simply absent from a browser's POST.
            if value:
                data[bound.html_name] = "on"
        elif value is None:
            data[bound.html_name] = ""
        elif isinstance(value, list | tuple):
            data[bound.html_name] = [str(v) for v in value]
        else:
            data[bound.html_name] = str(value)
    return data


def changeform_data(response: Any, **changes: Any) -> dict[str, Any]:
    """The rendered change form's current values, with ``changes`` applied by field name.

    ``response`` is the test client's response to GET of the change page (it carries the
    template ``context``).
    """
    data = _form_values(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(_form_values(formset.management_form))
        for form in formset.forms:
            data.update(_form_values(form))
    for name, value in changes.items():
        if value is False:
            data.pop(name, None)
        else:
            data[name] = "on" if value is True else value
    data["_save"] = "Save"
    return data
