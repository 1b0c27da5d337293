"""Test suite (a package so adapter tests can import the shared tester: ``from tests.method_tester import MethodTesterMixin``)."""
