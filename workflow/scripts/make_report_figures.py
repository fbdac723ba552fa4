import _repo  # noqa: F401 - makes this checkout's ddpmseg importable

from ddpmseg.cli import run_script
from ddpmseg.figures import make_report_figures


def main(smk):
    p, i, o = smk.params, smk.input, smk.output
    make_report_figures(
        tables={"miou": i.miou, "per_class": i.per_class, "per_image": i.per_image},
        member_logs=list(zip(p.member_runs, i.member_logs, strict=True)),
        predictions=list(zip(p.prediction_runs, i.predictions, strict=True)),
        benchmarks=list(i.benchmarks),
        outputs={
            "miou": o.miou,
            "per_class_table": o.per_class_table,
            "resources": o.resources,
            "resources_csv": o.resources_csv,
            "per_class": list(o.per_class),
            "curves": list(o.curves),
            "examples": list(o.examples),
        },
        datasets=p.datasets,
        variants=p.variants,
        class_names=p.class_names,
        palettes=p.palettes,
        number_class=p.number_class,
    )


run_script(snakemake, main)  # noqa: F821 - injected by Snakemake
