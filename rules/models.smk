# Models: train one on a prepared data set, convert Croce et al.'s .mat file, or read your
# own .keras/.h5 or .onnx file (saved as the plain Keras model of its network description).


rule build_model:
    input:
        unpack(_model_inputs),
    output:
        model=paths.MODEL,
        sidecar=paths.MODEL_SIDECAR,
    params:
        spec=model_spec,
    log:
        paths.log("build_model"),
    benchmark:
        paths.benchmark("build_model")
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/build_model.py"
