"""The bucket and execution role that sagemaker/cloudformation.yaml created, read from the stack's outputs.

    stack_outputs("procgen")  ->  {"bucket": "my-procgen-bucket", "role": "arn:aws:iam::123456789012:role/..."}

Only CloudFormation DescribeStacks is called. boto3 is imported when the function runs, so importing this
module needs nothing beyond the standard library and utils.errors.
"""

import re

from utils.errors import UserError

TEMPLATE = "sagemaker/cloudformation.yaml"
# What launch.py takes from the stack -> the template's output key that holds it.
OUTPUTS = {"bucket": "BucketName", "role": "RoleArn"}
# States in which the stack's resources exist as its template says (UPDATE_ROLLBACK_COMPLETE: the last
# good version was restored). ROLLBACK_COMPLETE also ends in _COMPLETE, but it means creation failed and
# everything was deleted again.
USABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE", "IMPORT_ROLLBACK_COMPLETE"}
# CloudFormation's rule for stack names; a stack ID (arn:...:stack/NAME/ID) is accepted as well.
STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")


def deploy_command(stack_name, region=None):
    """The `aws cloudformation deploy` command that creates the stack `stack_name` from the template."""
    where = f" --region {region}" if region else ""
    return (f"aws cloudformation deploy --template-file {TEMPLATE} --stack-name {stack_name}{where} "
            "--capabilities CAPABILITY_NAMED_IAM --parameter-overrides BucketName=YOUR-NEW-BUCKET "
            "BudgetEmail=you@example.com MonthlyBudgetUsd=100")


def stack_outputs(stack_name, region=None, session=None):
    """{"bucket": BUCKET_NAME, "role": ROLE_ARN} from the outputs BucketName and RoleArn of stack `stack_name`.

    stack_name: a CloudFormation stack name (or stack ID) as the user wrote it.
    region: the stack's region; None takes the session's (--region, AWS_DEFAULT_REGION, ~/.aws/config).
    session: a boto3.Session to use; None makes one.

    Raises UserError (one line: the value, what is allowed, the fix) when the name is not a stack name, no
    region or no credentials are set, the stack does not exist, is not in a usable *_COMPLETE state, lacks
    either output, or AWS refuses or cannot be reached.
    """
    if not isinstance(stack_name, str) or not (STACK_NAME.fullmatch(stack_name) or stack_name.startswith("arn:")):
        raise UserError(f'Stack name "{stack_name}" is not a CloudFormation stack name: it must start with a letter and '
                        "hold only letters, digits and hyphens (at most 128). Pass the name you gave `aws cloudformation "
                        "deploy --stack-name`, e.g. --stack procgen.")
    stack = _describe(stack_name, region, session)
    status = stack.get("StackStatus", "")
    if status not in USABLE:
        raise UserError(_status_problem(stack_name, status, stack.get("StackName") or stack_name))
    have = {o["OutputKey"]: o.get("OutputValue") for o in stack.get("Outputs", [])}
    missing = [key for key in OUTPUTS.values() if not have.get(key)]
    if missing:
        has = ", ".join(sorted(have)) or "none"
        word = "output" if len(missing) == 1 else "outputs"
        raise UserError(f'Stack "{stack_name}" lacks the {word} {", ".join(missing)} that {TEMPLATE} gives (its outputs: '
                        f"{has}). Pass --stack with a stack deployed from that template, or --bucket and --role instead.")
    return {name: have[key] for name, key in OUTPUTS.items()}


def _describe(stack_name, region, session):
    """The DescribeStacks entry of `stack_name`, with every AWS failure turned into a UserError."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
    except ImportError:
        raise UserError("Reading a stack needs boto3. Install it with: pip install -r requirements-dev.txt") from None
    session = session or boto3.Session(region_name=region)
    if session.get_credentials() is None:
        raise UserError(_no_credentials())
    try:
        client = session.client("cloudformation", region_name=region)
    except NoRegionError:
        raise UserError(f'No AWS region given to find stack "{stack_name}". Pass --region (the region you deployed '
                        "the stack in, e.g. --region us-east-1) or set AWS_DEFAULT_REGION.") from None
    where = client.meta.region_name
    try:
        return client.describe_stacks(StackName=stack_name)["Stacks"][0]
    except NoCredentialsError:
        raise UserError(_no_credentials()) from None
    except ClientError as e:
        err = e.response.get("Error", {})
        if err.get("Code") == "ValidationError" and "does not exist" in str(err.get("Message")):
            raise UserError(f'Stack "{stack_name}" does not exist in {where}. Create it with: '
                            f"{deploy_command(stack_name, where)} (or pass --region with the region it is in).") from None
        raise UserError(f'AWS refused DescribeStacks for stack "{stack_name}" in {where} ({err.get("Code")}: '
                        f"{err.get('Message')}). Check your credentials (aws sts get-caller-identity) and that you may "
                        "call cloudformation:DescribeStacks (the stack's LauncherPolicyArn output allows it).") from None
    except BotoCoreError as e:
        raise UserError(f'Cannot reach CloudFormation in {where} to read stack "{stack_name}" ({e}).') from None


def _no_credentials():
    return ("No AWS credentials found. Run `aws configure` (or `aws sso login`), or set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, then try again.")


def _status_problem(stack_name, status, name):
    """One line on why the stack `stack_name` (named `name`) in `status` cannot be used, and what to do."""
    events = f"aws cloudformation describe-stack-events --stack-name {name}"
    if status.endswith("_IN_PROGRESS"):
        fix = (f"wait until it is complete (aws cloudformation wait stack-create-complete --stack-name {name}, "
               "or stack-update-complete) and try again.")
    elif status == "DELETE_COMPLETE":
        fix = f"it was deleted. Create it again with: {deploy_command(name)}"
    elif status == "ROLLBACK_COMPLETE":
        fix = (f"its creation failed and was rolled back. See why with {events}, delete it (aws cloudformation "
               f"delete-stack --stack-name {name}) and deploy it again.")
    else:
        fix = f"see why with {events}, fix that and deploy it again."
    return f'Stack "{stack_name}" is {status}, not one of {", ".join(sorted(USABLE))}: {fix}'
