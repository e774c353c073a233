"""The one-click AWS set-up: sagemaker/cloudformation.yaml and sagemaker_tools/stack.py, which reads its outputs.

What is real and what is not:
- cfn-lint (the pinned version) checks the whole template against CloudFormation's resource schemas,
  every resource and property included.
- The template is deployed with boto3 CreateStack on a moto server that these tests start on 127.0.0.1;
  moto stands in for AWS, which cannot be reached from here. moto's CloudFormation creates the bucket (with
  its encryption), the execution role with its inline policy, the launcher managed policy and the notebook
  instance, and answers DescribeStacks as AWS does, deleted stacks included.
- moto does not support AWS::Budgets::Budget: it skips it with a warning and still reports CREATE_COMPLETE,
  so the tests deploy with CreateBudget=false rather than pass on a budget that was never made; cfn-lint
  checks it. moto also ignores the bucket's PublicAccessBlockConfiguration and OwnershipControls, the
  notebook's DefaultCodeRepository, and the template's Rules (a budget without BudgetEmail): those are
  checked by cfn-lint only.
- A stack still in progress cannot be had from moto (it creates stacks at once), so that answer comes
  from botocore's Stubber, which checks it against the DescribeStacks response shape.
"""

import ast
import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sagemaker_tools import stack
from tests.conftest import ROOT, start_moto, stop_moto
from utils.errors import UserError

TEMPLATE = ROOT / "sagemaker" / "cloudformation.yaml"
BUCKET = "procgen-stack-test"
# A stack made by hand, not from the template: one bucket and an output with a near-miss name.
BUCKET_ONLY = """
Resources:
  Bucket:
    Type: AWS::S3::Bucket
Outputs:
  Bucket:
    Value: !Ref Bucket
"""


# --------------------------------------------------------------------------- a local AWS endpoint


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    """A moto server on 127.0.0.1; while the module runs, this process's AWS clients go to it with fake keys."""
    import boto3

    tmp = tmp_path_factory.mktemp("moto")
    proc, endpoint = start_moto()
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(tmp / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-credentials")}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        for key in ("AWS_PROFILE", "AWS_REGION", "AWS_SESSION_TOKEN"):
            mp.delenv(key, raising=False)
        yield boto3.Session()
    stop_moto(proc)


def deploy(session, name, body, **parameters):
    """CreateStack as `aws cloudformation deploy` would for a new stack; the stack once CREATE_COMPLETE."""
    cf = session.client("cloudformation")
    cf.create_stack(StackName=name, TemplateBody=body, Capabilities=["CAPABILITY_NAMED_IAM"],
                    Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    # The waiter raises if the stack fails; its ceiling (an hour) is there against hangs only.
    cf.get_waiter("stack_create_complete").wait(StackName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 3600})
    return cf.describe_stacks(StackName=name)["Stacks"][0]


def outputs_of(described):
    return {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}


@pytest.fixture(scope="module")
def toolkit(aws):
    """The template deployed as stack "procgen" with its defaults, less the budget (moto lacks AWS::Budgets)."""
    return outputs_of(deploy(aws, "procgen", TEMPLATE.read_text(), BucketName=BUCKET, CreateBudget="false"))


def as_list(value):
    return value if isinstance(value, list) else [value]


def document(doc):
    """A policy document as a dict. moto hands back a CloudFormation inline policy as the Python repr of the
    dict it was given (AWS sends JSON, which boto3 decodes), so that form is read too."""
    return doc if isinstance(doc, dict) else ast.literal_eval(doc)


def user_error(*args, **kwargs):
    with pytest.raises(UserError) as info:
        stack.stack_outputs(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# --------------------------------------------------------------------------- the template


def test_template_passes_cfn_lint():
    lint = Path(sys.executable).parent / "cfn-lint"
    proc = subprocess.run([str(lint), str(TEMPLATE)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, f"cfn-lint exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"


def test_stack_deploys_and_gives_launch_its_bucket_and_role(aws, toolkit):
    """On moto: the bucket exists encrypted, the role trusts only SageMaker, stack_outputs reads both back."""
    s3, iam = aws.client("s3"), aws.client("iam")
    s3.head_bucket(Bucket=BUCKET)
    rules = s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"]
    assert [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules] == ["AES256"]

    role = iam.get_role(RoleName=toolkit["RoleArn"].rsplit("/", 1)[1])["Role"]
    assert role["Arn"] == toolkit["RoleArn"]
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert [(s["Effect"], s["Principal"], s["Action"]) for s in trust] == [
        ("Allow", {"Service": "sagemaker.amazonaws.com"}, "sts:AssumeRole")]

    assert stack.stack_outputs("procgen") == {"bucket": BUCKET, "role": role["Arn"]}
    stack_id = aws.client("cloudformation").describe_stacks(StackName="procgen")["Stacks"][0]["StackId"]
    assert stack.stack_outputs(stack_id, region="us-east-1", session=aws) == {"bucket": BUCKET, "role": role["Arn"]}


def test_execution_role_reaches_only_its_bucket_logs_metrics_and_images(aws, toolkit):
    iam = aws.client("iam")
    name = toolkit["RoleArn"].rsplit("/", 1)[1]
    assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == [], "a job must not launch jobs"
    statements = [s for p in iam.list_role_policies(RoleName=name)["PolicyNames"]
                  for s in document(iam.get_role_policy(RoleName=name, PolicyName=p)["PolicyDocument"])["Statement"]]
    granted = {a for s in statements for a in as_list(s["Action"])}
    assert {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "logs:PutLogEvents", "cloudwatch:PutMetricData",
            "ecr:GetAuthorizationToken", "ecr:BatchGetImage"} <= granted
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    for s in statements:
        assert s["Effect"] == "Allow"
        actions, resources = as_list(s["Action"]), as_list(s["Resource"])
        assert not any(a.endswith("*") for a in actions), s
        services = {a.split(":")[0] for a in actions}
        if services == {"s3"}:
            assert set(resources) <= {bucket_arn, f"{bucket_arn}/*"}, s
        elif services == {"logs"}:
            assert resources == ["arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/*"], s
        elif actions == ["cloudwatch:PutMetricData"]:
            assert s["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}}, s
        elif actions == ["ecr:GetAuthorizationToken"]:
            assert resources == ["*"], s
        else:
            assert services == {"ecr"}, s
            assert sorted(resources) == ["arn:aws:ecr:us-east-1:123456789012:repository/*",
                                         "arn:aws:ecr:us-east-1:763104351884:repository/*"], s


def test_launcher_policy_starts_jobs_and_passes_only_the_execution_role(aws, toolkit):
    iam = aws.client("iam")
    policy = iam.get_policy(PolicyArn=toolkit["LauncherPolicyArn"])["Policy"]
    statements = document(iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
                          ["PolicyVersion"]["Document"])["Statement"]
    granted = {a for s in statements for a in as_list(s["Action"])}
    assert {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
            "sagemaker:ListTrainingJobs", "iam:PassRole", "s3:PutObject", "cloudformation:DescribeStacks"} <= granted
    [pass_role] = [s for s in statements if "iam:PassRole" in as_list(s["Action"])]
    assert as_list(pass_role["Resource"]) == [toolkit["RoleArn"]]
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    for s in statements:
        if any(a.startswith("s3:") for a in as_list(s["Action"])):
            assert set(as_list(s["Resource"])) <= {f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"}, s


def test_notebook_runs_as_the_execution_role_and_may_launch(aws):
    """CreateNotebook=true: the instance runs as the execution role, which then also holds the launcher policy
    (launch.py runs on the notebook as that role). moto ignores DefaultCodeRepository; cfn-lint checks it."""
    out = outputs_of(deploy(aws, "procgen-notebook", TEMPLATE.read_text(), BucketName=f"{BUCKET}-nb",
                            CreateBudget="false", CreateNotebook="true",
                            RepositoryUrl="https://github.com/example/procgen-toolkit.git"))
    notebook = aws.client("sagemaker").describe_notebook_instance(NotebookInstanceName=out["NotebookInstanceName"])
    assert (notebook["RoleArn"], notebook["InstanceType"]) == (out["RoleArn"], "ml.t3.medium")
    attached = aws.client("iam").list_attached_role_policies(RoleName=out["RoleArn"].rsplit("/", 1)[1])
    assert [p["PolicyArn"] for p in attached["AttachedPolicies"]] == [out["LauncherPolicyArn"]]


def test_no_notebook_output_without_a_notebook(toolkit):
    assert sorted(toolkit) == ["BucketName", "LauncherPolicyArn", "RoleArn"]


# --------------------------------------------------------------------------- bad input: one line each


def test_missing_stack_says_how_to_create_it(aws):
    message = user_error("no-such-stack")
    assert 'Stack "no-such-stack" does not exist in us-east-1.' in message
    assert ("aws cloudformation deploy --template-file sagemaker/cloudformation.yaml --stack-name no-such-stack "
            "--region us-east-1 --capabilities CAPABILITY_NAMED_IAM --parameter-overrides BucketName=") in message
    assert "BudgetEmail=" in message and "MonthlyBudgetUsd=" in message


def test_stack_without_the_outputs_lists_what_it_has(aws):
    deploy(aws, "bucket-only", BUCKET_ONLY)
    message = user_error("bucket-only")
    assert 'Stack "bucket-only" lacks the outputs BucketName, RoleArn' in message
    assert "(its outputs: Bucket)" in message
    assert "--bucket and --role" in message


def test_deleted_stack_is_refused(aws):
    """AWS (and moto) still answer DescribeStacks for a deleted stack's ID, with DELETE_COMPLETE."""
    stack_id = deploy(aws, "short-lived", TEMPLATE.read_text(), BucketName=f"{BUCKET}-gone", CreateBudget="false")["StackId"]
    cf = aws.client("cloudformation")
    cf.delete_stack(StackName=stack_id)
    cf.get_waiter("stack_delete_complete").wait(StackName=stack_id, WaiterConfig={"Delay": 1, "MaxAttempts": 3600})
    message = user_error(stack_id)
    assert f'Stack "{stack_id}" is DELETE_COMPLETE, not one of CREATE_COMPLETE,' in message
    assert ("it was deleted. Create it again with: aws cloudformation deploy --template-file sagemaker/cloudformation.yaml "
            "--stack-name short-lived ") in message


@pytest.mark.parametrize("status, fix", [
    ("CREATE_IN_PROGRESS", "wait until it is complete (aws cloudformation wait stack-create-complete --stack-name procgen"),
    ("ROLLBACK_COMPLETE", "its creation failed and was rolled back. See why with aws cloudformation describe-stack-events"),
    ("UPDATE_ROLLBACK_FAILED", "aws cloudformation describe-stack-events --stack-name procgen"),
])
def test_stack_not_complete_is_refused(monkeypatch, status, fix):
    import boto3
    from botocore.stub import Stubber

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    client = session.client("cloudformation")
    stubber = Stubber(client)
    stubber.add_response("describe_stacks", {"Stacks": [{
        "StackName": "procgen", "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/procgen/1",
        "CreationTime": datetime.datetime(2026, 1, 1), "StackStatus": status,
        "Outputs": [{"OutputKey": "BucketName", "OutputValue": BUCKET}]}]}, {"StackName": "procgen"})
    monkeypatch.setattr(session, "client", lambda *args, **kwargs: client)
    with stubber:
        message = user_error("procgen", session=session)
    assert message.startswith(f'Stack "procgen" is {status}, not one of ')
    assert fix in message


@pytest.fixture
def no_aws_config(monkeypatch, tmp_path):
    """An environment with no AWS credentials or region anywhere a boto3 session looks."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_no_credentials_says_aws_configure(no_aws_config):
    message = user_error("procgen", region="us-east-1")
    assert message.startswith("No AWS credentials found. Run `aws configure`")


def test_no_region_says_how_to_give_one(no_aws_config, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    message = user_error("procgen")
    assert message.startswith('No AWS region given to find stack "procgen". Pass --region')
    assert "AWS_DEFAULT_REGION" in message


@pytest.mark.parametrize("name", ["my stack", "1procgen", "", "procgen_v2"])
def test_bad_stack_name_is_refused_before_any_call(no_aws_config, name):
    message = user_error(name)
    assert message.startswith(f'Stack name "{name}" is not a CloudFormation stack name: it must start with a letter')


# --------------------------------------------------------------------------- launch.py --stack


def test_launch_takes_bucket_and_role_from_the_stack(aws, toolkit, capsys, monkeypatch):
    """`launch.py EXP --stack procgen`, through the real SDK on moto: the job gets the stack's role and bucket."""
    from sagemaker_tools import launch

    monkeypatch.setenv("SAGEMAKER_VALIDATE_ROLE", "false")
    monkeypatch.delenv("SAGEMAKER_ROLE", raising=False)
    experiment = str(ROOT / "experiments" / "procgen-starter-example.yaml")
    rc = launch.main([experiment, "--stack", "procgen", "--instance-type", "ml.c5.xlarge", "--job-name", "from-stack-1",
                      "--max-run", "1h"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "submitted: from-stack-1 in us-east-1" in out
    job = aws.client("sagemaker").describe_training_job(TrainingJobName="from-stack-1")
    assert job["RoleArn"] == toolkit["RoleArn"]
    assert job["CheckpointConfig"]["S3Uri"] == f"s3://{BUCKET}/procgen/from-stack-1/checkpoints"
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"].startswith(f"s3://{BUCKET}/")

    rc = launch.main([experiment, "--stack", "procgen", "--bucket", "another-bucket", "--dry-run"])
    _, err = capsys.readouterr()
    assert rc == 2 and err.strip().splitlines() == [
        "error: --stack procgen gives the bucket and the role (its outputs BucketName and RoleArn). "
        "Drop --bucket and --role, or drop --stack."]
    rc = launch.main([experiment, "--stack", "no-such-stack", "--dry-run"])
    _, err = capsys.readouterr()
    assert rc == 2 and "no-such-stack" in err and "aws cloudformation deploy" in err and len(err.strip().splitlines()) == 1
