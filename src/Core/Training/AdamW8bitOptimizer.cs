using LoraPS.Quantization;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Training;

/// <summary>
/// AdamW with 8-bit state, as bitsandbytes' <c>AdamW8bit</c> (<c>Optimizer2State</c>, <c>optim_bits=8</c>, blockwise):
/// <code>
/// m, v ← dequantize(codes, absmax)          (m: signed dynamic map, v: unsigned; blocks of 256)
/// AdamW step in float32 with m, v            (the same update as <see cref="AdamWOptimizer"/>)
/// codes, absmax ← quantize(m), quantize(v)   (absmax = max |·| per block of the new values)
/// </code>
/// Parameters with fewer than 4096 elements (bnb's <c>min_8bit_size</c>) keep float32 <c>exp_avg</c>/<c>exp_avg_sq</c>.
/// The 8-bit state is saved as <c>exp_avg_codes</c>, <c>exp_avg_absmax</c>, <c>exp_avg_sq_codes</c>, <c>exp_avg_sq_absmax</c>.
/// </summary>
/// <remarks>
/// State memory is 2 bytes plus 8 bytes per 256 per element instead of 8. The update itself uses the float32 moments of
/// this step; only what is carried to the next step is rounded to 8 bits, so trajectories stay close to AdamW's.
/// </remarks>
public sealed class AdamW8bitOptimizer : Optimizer
{
    public AdamW8bitOptimizer(IReadOnlyList<(string Name, Parameter Parameter)> parameters, double learningRate = 1e-3,
        double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double weightDecay = 0.01)
        : base(parameters, learningRate)
    {
        (Beta1, Beta2, Epsilon, WeightDecay) = (beta1, beta2, epsilon, weightDecay);
        new OptimizerOptions { Kind = OptimizerKind.AdamW8bit, LearningRate = learningRate, Beta1 = beta1, Beta2 = beta2, Epsilon = epsilon, WeightDecay = weightDecay }.Validate();
    }

    public double Beta1 { get; }
    public double Beta2 { get; }
    public double Epsilon { get; }
    public double WeightDecay { get; }

    private protected override void Update(string name, Parameter p, Tensor grad, long step)
    {
        if (!OptimizerState8bit.Uses8bitState(p.numel()))
        {
            var expAvg = GetState(name, "exp_avg") ?? SetState(name, "exp_avg", zeros_like(p));
            var expAvgSq = GetState(name, "exp_avg_sq") ?? SetState(name, "exp_avg_sq", zeros_like(p));
            AdamWOptimizer.Apply(p, grad, expAvg, expAvgSq, step, LearningRate, Beta1, Beta2, Epsilon, WeightDecay);
            return;
        }
        using var m = EightBitState(name, "exp_avg", DynamicMap.Signed, p);
        using var v = EightBitState(name, "exp_avg_sq", DynamicMap.Unsigned, p);
        var m32 = m.Dequantize();
        var v32 = v.Dequantize();
        AdamWOptimizer.Apply(p, grad.to(ScalarType.Float32), m32, v32, step, LearningRate, Beta1, Beta2, Epsilon, WeightDecay);
        m.Requantize(m32);
        v.Requantize(v32);
    }

    /// <summary>A view over the parameter's 8-bit state, created zero (codes 0, absmax 0) on its first update as bnb does.</summary>
    Blockwise8bitTensor EightBitState(string name, string key, DynamicMap map, Parameter p)
    {
        var codes = GetState(name, key + "_codes") ?? SetState(name, key + "_codes", zeros(p.shape, ScalarType.Byte, p.device));
        var absmax = GetState(name, key + "_absmax") ?? SetState(name, key + "_absmax", zeros(Blocks(p), ScalarType.Float32, p.device));
        return Blockwise8bitTensor.Over(codes, absmax, map, OptimizerState8bit.BlockSize);
    }

    static long Blocks(Parameter p) => (p.numel() + OptimizerState8bit.BlockSize - 1) / OptimizerState8bit.BlockSize;

    private protected override long[] StateShape(string key, Parameter p) =>
        key.EndsWith("_absmax", StringComparison.Ordinal) ? [Blocks(p)] : p.shape;
}
