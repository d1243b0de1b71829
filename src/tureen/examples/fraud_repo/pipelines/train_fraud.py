"""Train, evaluate, register and deploy the fraud model: a Kubeflow pipeline (KFP v2 SDK).

Run it on this machine (offline, in this environment; needs `pip install 'tureen[pipelines]'`):

    tureen pipeline run pipelines/train_fraud.py
    tureen pipeline run pipelines/train_fraud.py -p learning_rate=0.1 -p canary_percent=20

Compile it for Kubeflow Pipelines (tureen's components run in the image you build):

    tureen pipeline compile pipelines/train_fraud.py --out train_fraud.yaml \
        --image registry.example.com/tureen-fraud:1 --image-context image/

The first run creates the deployment `fraud` serving the model; later runs send a share of
its traffic to a new version as a canary when that version's AUC beats the one it serves.
"""

from kfp import dsl

from tureen.pipelines.components import deploy_gate, evaluate, register, train, training_set


@dsl.pipeline(name="train-fraud",
              description="Point-in-time training set → train → evaluate → register → deploy")
def train_fraud(
    feature_service: str = "fraud_detection_v2",
    entities: str = "data/labels.parquet",
    label: str = "is_fraud",
    test_size: float = 0.2,
    learning_rate: float = 0.05,
    max_iter: int = 100,
    max_depth: int = 3,
    threshold: float = 0.6,
    canary_percent: float = 10.0,
    model_name: str = "fraud_model",
    deployment: str = "fraud",
    config: str = "",
) -> None:
    data = training_set(entities=entities, feature_service=feature_service, config=config)
    fit = train(training_set=data.outputs["dataset"], label=label, estimator="gradient_boosting",
                params={"max_iter": max_iter, "max_depth": max_depth},
                learning_rate=learning_rate, test_size=test_size)
    scores = evaluate(model=fit.outputs["model"], test_set=fit.outputs["test_set"])
    model = register(model=fit.outputs["model"], metrics=scores.outputs["metrics"],
                     training_set=data.outputs["dataset"], model_name=model_name,
                     feature_service=feature_service,
                     pipeline_run=dsl.PIPELINE_JOB_ID_PLACEHOLDER, config=config)
    deploy_gate(metrics=scores.outputs["metrics"], deployment=deployment,
                model_name=model.outputs["name"], version=model.outputs["version"],
                metric="auc", threshold=threshold, canary_percent=canary_percent,
                config=config)
