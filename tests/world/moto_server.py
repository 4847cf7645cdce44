"""moto's server for the test world, with two gaps of its AWS Batch closed as AWS documents it.

1. AWS Batch User Guide, "Array jobs": cancelling or terminating an array job's parent cancels
   or terminates its child jobs with it (CancelJob: "When you try to cancel an array parent job
   in PENDING, AWS Batch attempts to cancel all child jobs"). moto 5.2.5 changes only the
   parent, so `run-render stop --batch` (one TerminateJob per array) could not be tested
   against it.
2. Where a job ran. On AWS a job's attempt runs on a container instance of its compute
   environment's ECS cluster (an EC2 instance the environment launched), and DescribeJobs names
   it in `attempts[].container.containerInstanceArn`. moto runs each job as a bare container and
   answers "TBD" ("TODO setup ecs container instance"). Here an attempt of a MANAGED EC2
   environment is placed on one of the environment's EC2 instances (launched as moto's own
   create_compute_environment does, of the environment's first instance type, when it has none:
   the analogue of scaling up), registered once in the environment's ECS cluster; the attempt
   names that container instance. An environment of only "optimal" types, or Fargate, keeps
   moto's "TBD". Spot environments get on-demand instances here.
3. How a job is ended. TerminateJob (and a job's timeout) stops its container as ECS stops a
   task: SIGTERM, then SIGKILL once the stop timeout (30 s by default) has passed (AWS Batch
   User Guide, "Job timeouts"; ECS `stopTimeout`), so the process can save its work. moto 5.2.5
   SIGKILLs at once. Here its `container.kill()` is a `docker stop` with that timeout.
4. The init process. A job definition's `linuxParameters.initProcessEnabled` makes ECS start the
   container under an init process (`docker run --init`; ECS Developer Guide,
   "LinuxParameters"). moto 5.2.5 ignores it. Here the job's containers are started with
   `init=True` when its definition asks for it.
Everything else is moto's own; setup.sh starts moto through this file.
"""

import sys
import threading

import docker.models.containers
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

# moto's own image for the instances of a MANAGED compute environment.
_MOTO_IMAGE = "ami-03cf127a"
_placing = threading.Lock()


def _container_instance(job):
    """The container instance ARN of the environment instance this job's attempt runs on."""
    backend = job.backend
    for env in job.job_queue.environments:
        cr = env.compute_resources or {}
        if env.env_type != "MANAGED" or not env.ecs_name or "FARGATE" in cr.get("type", ""):
            continue
        types = [t for t in cr.get("instanceTypes") or [] if t != "optimal"]
        if not env.instances and not types:
            continue
        with _placing:
            if not env.instances:
                reservation = backend.ec2_backend.run_instances(
                    image_id=_MOTO_IMAGE,
                    count=1,
                    user_data=None,
                    security_group_names=[],
                    instance_type=types[0],
                    region_name=backend.region_name,
                    subnet_id=(cr.get("subnets") or [None])[0],
                    key_name=cr.get("ec2KeyPair", "AWS_OWNED"),
                    security_group_ids=cr.get("securityGroupIds") or [],
                    is_instance_type_default=False,
                )
                env.add_instance(reservation.instances[0])
            instance = env.instances[0]
            registered = env.__dict__.setdefault("_rtb_container_instances", {})
            if instance.id not in registered:
                ci = backend.ecs_backend.register_container_instance(env.ecs_name, instance.id)
                registered[instance.id] = ci.container_instance_arn
            return registered[instance.id]
    return None


def _placed(own):
    def start_attempt(self):
        own(self)
        try:
            arn = _container_instance(self)
        except Exception as e:  # the job runs all the same, unplaced, as in moto
            print(f"moto_server.py: could not place job {self.job_id}: {e!r}", file=sys.stderr)
            arn = None
        if arn and self.latest_attempt:
            self.latest_attempt["container"]["containerInstanceArn"] = arn

    start_attempt.__doc__ = "moto's _start_attempt, with the container instance the attempt ran on."
    return start_attempt


models.Job._start_attempt = _placed(models.Job._start_attempt)

# ECS's default stopTimeout: SIGTERM, then SIGKILL this long after.
_STOP_TIMEOUT = 30
_kill = docker.models.containers.Container.kill


def _stop_as_ecs_does(self, signal=None):
    """moto's kill() of a job's container, as ECS stops a task (a signal given is sent as is)."""
    if signal is not None:
        return _kill(self, signal=signal)
    return self.stop(timeout=_STOP_TIMEOUT)


docker.models.containers.Container.kill = _stop_as_ecs_does

# moto runs each job in a thread of its own (Job.run): what its definition asks of the
# container is kept for that thread, and docker's run applies it.
_job_thread = threading.local()
_run_job = models.Job.run


def _run_remembering_init(self):
    """moto's Job.run, with whether its definition asks for an init process kept for its thread."""
    props = self.job_definition.container_properties or {}
    _job_thread.init = bool((props.get("linuxParameters") or {}).get("initProcessEnabled"))
    return _run_job(self)


models.Job.run = _run_remembering_init
_containers_run = docker.models.containers.ContainerCollection.run


def _run_container(self, *args, **kwargs):
    """docker's run of a job's container, under an init process when its definition asks for one."""
    if getattr(_job_thread, "init", False):
        kwargs.setdefault("init", True)
    return _containers_run(self, *args, **kwargs)


docker.models.containers.ContainerCollection.run = _run_container

if __name__ == "__main__":
    sys.exit(main())
