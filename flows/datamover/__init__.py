"""volmigrate.flows.datamover: moving a volume's data, and proving it moved.

The copy methods (the kernel copy, dd, file I/O), the rate limit, the
durable checkpoints a crashed copy resumes from, and the verification of a
copy. It holds no TaskFlow and imports nothing from the rest of
``volmigrate.flows``: the flows call it and catch its errors
(:mod:`~volmigrate.flows.datamover.errors`), so that it can be run, tested
and benchmarked on plain files without a migration around it.
"""

from volmigrate.flows.datamover.copier import Copier
from volmigrate.flows.datamover.dd import DdCopy
from volmigrate.flows.datamover.errors import (CopyAborted, CopyFailed, CopyParked,
                                               DataMoverError)
from volmigrate.flows.datamover.fileio import FileCopy
from volmigrate.flows.datamover.files import data_extents
from volmigrate.flows.datamover.kernel import KernelCopy

__all__ = ["Copier", "CopyAborted", "CopyFailed", "CopyParked", "DataMoverError", "DdCopy", "FileCopy",
           "KernelCopy", "data_extents"]
