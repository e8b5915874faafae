"""scripts/tune_matcher.py: the leave-one-group-out measure builds each matcher without the group it asks about."""

import importlib.util

from ivr.content import config, paths


def _tune():
    spec = importlib.util.spec_from_file_location("tune_matcher", paths.home() / "scripts" / "tune_matcher.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_out_of_scope_group_is_asked_of_a_matcher_that_never_saw_it(faq):
    folds = _tune().leave_group_out(faq, config.load("match"))
    assert [label for label, _ in folds] == [g.label for g in faq.out_of_scope]
    total = sum(len(g.phrasings) for g in faq.out_of_scope)
    for (label, pairs), group in zip(folds, faq.out_of_scope, strict=True):
        assert [t for _, t, _ in pairs] == list(group.phrasings)
        assert all(want is None for _, _, want in pairs)
        m = pairs[0][0]
        assert sum(1 for o in m.owners if o < 0) == total - len(group.phrasings)
        assert label not in {g.label for g in m.faq.out_of_scope}
