"""Fixtures of the operator's tests on the real control plane (`kube`, with our CRDs applied: `crds`); the pure
parts' tests here need none."""

from support.kube import crds as crds
from support.kube import kube as kube
