"""moto's server for the test world, with one gap of its AWS Batch closed as AWS documents it.

AWS Batch User Guide, "Array jobs": cancelling or terminating an array job's parent cancels or
terminates its child jobs with it (CancelJob: "When you try to cancel an array parent job in
PENDING, AWS Batch attempts to cancel all child jobs"). moto 5.2.5 changes only the parent,
so `run-render stop --batch` (one TerminateJob per array) could not be tested against it.
Everything else is moto's own; setup.sh starts moto through this file.
"""

import sys

from moto.batch import models
from moto.server import main


def _cascading(name):
    own = getattr(models.BatchBackend, name)

    def call(self, job_id, reason):
        own(self, job_id, reason)
        job = self.get_job_by_id(job_id)
        for child in getattr(job, "_child_jobs", None) or []:
            own(self, child.job_id, reason)

    call.__doc__ = f"{name}, passed on to an array parent's children as AWS does."
    return call


for _name in ("cancel_job", "terminate_job"):
    setattr(models.BatchBackend, _name, _cascading(_name))

if __name__ == "__main__":
    sys.exit(main())
