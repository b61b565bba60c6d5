"""DatabaseMode=create (and RDS Proxy for an existing database), read from template.yaml.

The conditions are evaluated at chosen parameter values (the template reader resolves them at the
defaults, so each case rewrites the defaults it needs): which resources exist, how the functions reach
the database (proxy, subnets, security groups), and which endpoints let them reach AWS without a NAT.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devstack.template import Template

CREATE = {"DatabaseMode": "create"}
EXISTING_WITH_PROXY = {"ExistingDatabaseIdentifier": "my-cluster", "VpcId": "vpc-0123456789abcdef0"}


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load()


def at(template: Template, **defaults: str) -> Template:
    """The same template with some parameters' defaults changed (the reader resolves at the defaults)."""
    doc = copy.deepcopy(template.doc)
    for name, value in defaults.items():
        doc["Parameters"][name]["Default"] = value
    return Template(doc)


def created(template: Template) -> set[str]:
    """The resources CloudFormation would create with the template's current defaults."""
    return {
        name
        for name, res in template.resources.items()
        if "Condition" not in res or template.condition(res["Condition"])
    }


def ref(value: Any) -> str | None:
    return value.get("Ref") if isinstance(value, dict) else None


def db_connected(template: Template) -> dict[str, dict[str, Any]]:
    """Functions whose policies read the database secret."""
    return {
        name: fn
        for name, fn in template.functions().items()
        if "DatabaseSecretArn" in str(fn["Properties"].get("Policies"))
    }


DATABASE_RESOURCES = {
    "AuroraCluster",
    "AuroraWriter",
    "DatabaseSubnetGroup",
    "AuroraClusterParameters",
    "DatabaseSecurityGroup",
}
PROXY_RESOURCES = {"RdsProxy", "RdsProxyRole", "ProxySecurityGroup", "FunctionSecurityGroup"}
VPC_RESOURCES = {
    "Vpc",
    "PrivateSubnetA",
    "PrivateSubnetB",
    "PrivateRouteTable",
    "SecretsManagerEndpoint",
    "SqsEndpoint",
    "S3Endpoint",
    "DynamoDbEndpoint",
}


def test_the_default_deploys_none_of_the_database_or_network_resources(template):
    made = created(template)
    assert not made & (DATABASE_RESOURCES | PROXY_RESOURCES | VPC_RESOURCES | {"NatGateway"})
    env = template.global_env()
    assert template.resolve(env["DB_SECRET_ARN"]) == template.resolve({"Ref": "DatabaseSecretArn"})
    assert template.resolve(env["DB_HOST"]) == ""  # the secret's host, as before


def test_create_mode_makes_a_vpc_aurora_its_proxy_and_the_endpoints(template):
    made = created(at(template, **CREATE))
    assert DATABASE_RESOURCES | PROXY_RESOURCES | VPC_RESOURCES | {"RdsProxyTargetAurora", "NatGateway"} <= made
    assert "RdsProxyTargetExisting" not in made
    assert "NatGateway" not in created(at(template, **CREATE, VpcNatGateway="false"))


def test_create_mode_in_a_given_vpc_makes_no_vpc_and_endpoints_only_when_asked(template):
    given = at(template, **CREATE, VpcId="vpc-0123456789abcdef0")
    made = created(given)
    assert made >= DATABASE_RESOURCES | PROXY_RESOURCES
    assert not made & {"Vpc", "PrivateSubnetA", "NatGateway", "S3Endpoint", "DynamoDbEndpoint"}
    assert {"SecretsManagerEndpoint", "SqsEndpoint"} <= made
    assert "SqsEndpoint" not in created(at(template, **CREATE, VpcId="vpc-0123456789abcdef0", VpcEndpoints="false"))


def test_the_proxy_is_offered_for_an_existing_cluster_or_instance(template):
    cluster = at(template, **EXISTING_WITH_PROXY)
    assert {"RdsProxy", "RdsProxyTargetExisting", "ProxyToExistingDatabaseEgress"} <= created(cluster)
    assert not created(cluster) & DATABASE_RESOURCES
    target = template.resources["RdsProxyTargetExisting"]["Properties"]
    assert cluster.resolve(target["DBClusterIdentifiers"]) == [{"Ref": "ExistingDatabaseIdentifier"}]
    instance = at(template, **EXISTING_WITH_PROXY, ExistingDatabaseKind="instance")
    assert instance.resolve(target["DBClusterIdentifiers"]) is None
    assert instance.resolve(target["DBInstanceIdentifiers"]) == [{"Ref": "ExistingDatabaseIdentifier"}]
    assert "RdsProxy" not in created(at(template, **EXISTING_WITH_PROXY, DatabaseProxy="false"))


def test_the_proxy_targets_the_created_cluster_with_its_managed_secret_over_tls(template):
    res = template.resources
    target = res["RdsProxyTargetAurora"]
    assert target["DependsOn"] == "AuroraWriter"
    assert target["Properties"]["DBClusterIdentifiers"] == [{"Ref": "AuroraCluster"}]
    proxy = res["RdsProxy"]["Properties"]
    assert proxy["RequireTLS"] is True and proxy["EngineFamily"] == "POSTGRESQL"
    create = at(template, **CREATE)
    managed = {"Fn::GetAtt": ["AuroraCluster", "MasterUserSecret.SecretArn"]}
    assert create.resolve(proxy["Auth"][0]["SecretArn"]) == managed
    cluster = res["AuroraCluster"]["Properties"]
    assert cluster["ManageMasterUserPassword"] is True and "MasterUserPassword" not in cluster
    assert cluster["StorageEncrypted"] is True
    assert res["AuroraWriter"]["Properties"]["DBInstanceClass"] == "db.serverless"
    assert res["AuroraWriter"]["Properties"]["PubliclyAccessible"] is False
    assert res["AuroraClusterParameters"]["Properties"]["Parameters"]["rds.force_ssl"] == "1"
    # The functions connect to the proxy with the managed secret.
    env = create.global_env()
    assert create.resolve(env["DB_HOST"]) == {"Fn::GetAtt": ["RdsProxy", "Endpoint"]}
    assert create.resolve(env["DB_SECRET_ARN"]) == managed


def test_every_db_connected_function_joins_the_vpc_through_its_own_security_group_and_ingest_stays_out(template):
    create = at(template, **CREATE)
    connected = db_connected(template)
    assert {"EventWorkerFunction", "SendWorkerFunction", "DbMigrateFunction"} <= set(connected)
    for name, fn in connected.items():
        vpc = create.resolve(fn["Properties"].get("VpcConfig"))
        assert vpc, f"{name} reads the database secret but has no VpcConfig"
        assert create.resolve(vpc["SubnetIds"]) == [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}], name
        assert create.resolve(vpc["SecurityGroupIds"]) == [{"Ref": "FunctionSecurityGroup"}], name
        secret_policy = str(fn["Properties"]["Policies"])
        assert "MasterUserSecret.SecretArn" in secret_policy, f"{name} cannot read the created cluster's secret"
    for name in ("GraphIngestFunction", "WhatsAppIngestFunction", "LiveKitIngestFunction"):
        assert "VpcConfig" not in template.functions()[name]["Properties"]  # cold start budget: no VPC


def rules(template: Template, group: str) -> list[dict[str, Any]]:
    """A group's inline ingress plus the standalone ingress resources naming it."""
    props = template.resources[group]["Properties"]
    found = list(props.get("SecurityGroupIngress", []))
    for res in template.of_type("AWS::EC2::SecurityGroupIngress").values():
        if ref(res["Properties"]["GroupId"]) == group:
            found.append(res["Properties"])
    return found


def egress(template: Template, group: str) -> list[dict[str, Any]]:
    props = template.resources[group]["Properties"]
    found = [r for r in props.get("SecurityGroupEgress", []) if r.get("CidrIp") != "255.255.255.255/32"]
    for name, res in template.of_type("AWS::EC2::SecurityGroupEgress").items():
        if ref(res["Properties"]["GroupId"]) == group and name in created(template):
            found.append(res["Properties"])
    return found


def test_security_groups_allow_only_functions_to_proxy_to_database_on_5432(template):
    create = at(template, **CREATE)
    (db_in,) = rules(create, "DatabaseSecurityGroup")
    assert (db_in["FromPort"], db_in["ToPort"]) == (5432, 5432)
    assert create.resolve(db_in["SourceSecurityGroupId"]) == {"Ref": "ProxySecurityGroup"}
    assert egress(create, "DatabaseSecurityGroup") == []
    (proxy_in,) = rules(create, "ProxySecurityGroup")
    assert (proxy_in["FromPort"], ref(proxy_in["SourceSecurityGroupId"])) == (5432, "FunctionSecurityGroup")
    (proxy_out,) = egress(create, "ProxySecurityGroup")
    assert (proxy_out["FromPort"], ref(proxy_out["DestinationSecurityGroupId"])) == (5432, "DatabaseSecurityGroup")
    assert rules(create, "FunctionSecurityGroup") == []  # nothing calls into a function
    to_db = [r for r in egress(create, "FunctionSecurityGroup") if r["FromPort"] == 5432]
    assert [create.resolve(r["DestinationSecurityGroupId"]) for r in to_db] == [{"Ref": "ProxySecurityGroup"}]
    (endpoint_in,) = rules(create, "EndpointSecurityGroup")
    assert (endpoint_in["FromPort"], ref(endpoint_in["SourceSecurityGroupId"])) == (443, "FunctionSecurityGroup")
    # Without the proxy the functions talk to the database directly, and nothing else changes.
    direct = at(template, **CREATE, DatabaseProxy="false")
    (db_in,) = rules(direct, "DatabaseSecurityGroup")
    assert direct.resolve(db_in["SourceSecurityGroupId"]) == {"Ref": "FunctionSecurityGroup"}
    assert "RdsProxy" not in created(direct)


def test_the_endpoints_cover_the_aws_services_the_vpc_functions_call(template):
    res = template.resources
    interface = {
        res[name]["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]: res[name]["Properties"]
        for name, r in template.of_type("AWS::EC2::VPCEndpoint").items()
        if r["Properties"]["VpcEndpointType"] == "Interface"
    }
    assert set(interface) == {"secretsmanager", "sqs"}
    for props in interface.values():
        assert props["PrivateDnsEnabled"] is True
        assert props["SecurityGroupIds"] == [{"Ref": "EndpointSecurityGroup"}]
    gateway = {
        r["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[1]: r["Properties"]
        for r in template.of_type("AWS::EC2::VPCEndpoint").values()
        if r["Properties"]["VpcEndpointType"] == "Gateway"
    }
    assert set(gateway) == {"s3", "dynamodb"}  # s3: the migration custom resource's response URL
    assert all(g["RouteTableIds"] == [{"Ref": "PrivateRouteTable"}] for g in gateway.values())


def test_the_migration_waits_for_the_database_path(template):
    props = template.resources["DatabaseSchema"]["Properties"]
    create = at(template, **CREATE)
    assert create.resolve(props["DatabaseReady"]) == {"Ref": "RdsProxyTargetAurora"}
    assert {"Ref": "S3Endpoint"} in create.resolve(props["NetworkReady"])
    assert template.resolve(props["DatabaseReady"]) == "none"


def test_the_connections_alarm_watches_the_proxy_against_the_budget_on_the_dashboard(template):
    alarm = template.resources["DbConnectionsNearBudgetAlarm"]["Properties"]
    stat, share = alarm["Metrics"]
    metric = stat["MetricStat"]["Metric"]
    create = at(template, **CREATE)
    assert create.resolve(metric["MetricName"]) == "ClientConnections"
    assert create.resolve(metric["Dimensions"][0]["Value"]) == {"Ref": "RdsProxy"}
    assert template.resolve(metric["MetricName"]) == "DatabaseConnections"
    assert "${DbConnectionBudget}" in share["Expression"]["Fn::Sub"]
    (dashboard,) = template.of_type("AWS::CloudWatch::Dashboard").values()
    assert "${DbConnectionsNearBudgetAlarm.Arn}" in str(dashboard["Properties"]["DashboardBody"])
