# SPDX-License-Identifier: Apache-2.0
# pytest setup: the aplq package of this source tree (python/aplq) is imported, whether or not
# PYTHONPATH names it; APLQ_LIBRARY (set by `meson test`) says which libaplq to load, otherwise
# the package looks in this tree's build directories.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "python"))
