"""The CLI's tests on the real control plane (`kube`, with our CRDs: `crds`) share the session's apiserver."""

from support.kube import crds as crds
from support.kube import kube as kube
