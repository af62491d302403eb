# Exact minimal adversarial perturbations with MIPVerify.jl (Tjeng, Xiao, Tedrake 2019).
#
#   julia --project=workflow/julia workflow/julia/exact_mipverify.jl MODEL.mat SPEC.json OUT.json
#
# MODEL.mat: parameters in MIPVerify's naming ("<layer>/weight", "<layer>/bias"; conv
#   kernels (H, W, C_in, C_out), dense matrices (in, out)).
# SPEC.json: {"layers": [{"type": "conv2d", "name", "stride", "padding", "shape"} |
#   {"type": "dense", "name", "shape"} | {"type": "relu"} | {"type": "flatten"}, ...],
#   "input_shape": [H, W, C], "norm": "linf" | "l1", "time_limit": seconds per point,
#   "tightening": "lp" | "interval_arithmetic" | "mip", "labels": [1-based labels],
#   "radius": [domain radius per point], "x": [[flat NHWC input], ...],
#   "logits": [[reference logits], ...]}.
# OUT.json: {"points": [{"status", "objective", "bound", "perturbed" (flat NHWC), "seconds"}]}
# written by robcurves.exact.mipverify, which re-checks every witness in TensorFlow.

using MIPVerify
using HiGHS
using JuMP
using MAT
using JSON

function build_network(params, layers)
    out = MIPVerify.Layer[]
    for l in layers
        t = l["type"]
        if t == "conv2d"
            padding = l["padding"] == "same" ? MIPVerify.SamePadding() : MIPVerify.ValidPadding()
            push!(out, get_conv_params(params, l["name"], Tuple(Int.(l["shape"]));
                                       expected_stride = Int(l["stride"]), padding = padding))
        elseif t == "dense"
            push!(out, get_matrix_params(params, l["name"], Tuple(Int.(l["shape"]))))
        elseif t == "relu"
            push!(out, ReLU())
        elseif t == "flatten"
            # Flatten(4) permutes (1, H, W, C) to (C, W, H, 1) before the column-major
            # vec, which is TensorFlow's row-major NHWC order.
            push!(out, Flatten(4))
        else
            error("unsupported layer type $(t)")
        end
    end
    return Sequential(out, "robcurves")
end

# A flat NHWC (row-major) vector -> Julia array (1, H, W, C).
function to_input(flat, shape)
    h, w, c = shape
    a = permutedims(reshape(Float64.(flat), c, w, h), (3, 2, 1))
    return reshape(a, 1, h, w, c)
end

# Julia array (1, H, W, C) -> flat NHWC (row-major) vector.
from_input(a) = vec(permutedims(a[1, :, :, :], (3, 2, 1)))

function main(model_path, spec_path, out_path)
    spec = JSON.parsefile(spec_path)
    params = matread(model_path)
    nn = build_network(params, spec["layers"])
    shape = Int.(spec["input_shape"])
    norm_order = spec["norm"] == "linf" ? Inf : 1
    tightening = Dict("lp" => lp, "interval_arithmetic" => interval_arithmetic, "mip" => mip)[spec["tightening"]]
    time_limit = Float64(spec["time_limit"])
    optimizer = get(ENV, "ROBCURVES_MIP_SOLVER", "highs") == "gurobi" ?
                (@eval begin using Gurobi; Gurobi.Optimizer end) : HiGHS.Optimizer
    MIPVerify.set_log_level!("warn")
    points = Any[]
    for (i, flat) in enumerate(spec["x"])
        x0 = to_input(flat, shape)
        logits = vec(x0 |> nn)
        ref = Float64.(spec["logits"][i])
        if maximum(abs.(logits .- ref)) > 1e-3 * (1 + maximum(abs.(ref)))
            error("the network read from $(model_path) disagrees with TensorFlow on point $(i): " *
                  "$(logits) vs $(ref) (layer order or flatten convention?)")
        end
        r = Float64(spec["radius"][i])
        pp = norm_order == Inf ? MIPVerify.LInfNormBoundedPerturbationFamily(r) :
             MIPVerify.UnrestrictedPerturbationFamily()
        t = @elapsed d = find_adversarial_example(
            nn, x0, Int(spec["labels"][i]), optimizer,
            Dict("output_flag" => false, "time_limit" => time_limit, "threads" => 1);
            invert_target_selection = true, pp = pp, norm_order = norm_order,
            tightening_algorithm = tightening,
            tightening_options = Dict("output_flag" => false, "time_limit" => max(1.0, time_limit / 10)),
            solve_if_predicted_in_targeted = false)
        m = d[:Model]
        status = string(d[:SolveStatus])
        has = JuMP.result_count(m) > 0
        push!(points, Dict(
            "status" => status,
            "objective" => has ? JuMP.objective_value(m) : nothing,
            "bound" => status == "INFEASIBLE" ? r : JuMP.objective_bound(m),
            "perturbed" => has ? from_input(JuMP.value.(d[:PerturbedInput])) : nothing,
            "seconds" => t,
        ))
        println("point $(i): $(status) in $(round(t; digits = 1)) s")
    end
    open(out_path, "w") do io
        JSON.print(io, Dict("points" => points))
    end
end

main(ARGS[1], ARGS[2], ARGS[3])
