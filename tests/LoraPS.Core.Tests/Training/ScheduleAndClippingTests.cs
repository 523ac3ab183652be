using LoraPS.Tests.Adapters;
using LoraPS.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Parameter = TorchSharp.Modules.Parameter;

namespace LoraPS.Tests.Training;

/// <summary>Learning-rate schedules at known steps (LitGPT's warmup + cosine, linear, constant) and global-norm clipping.</summary>
public class ScheduleAndClippingTests
{
    [Fact]
    public void CosineWithWarmupIsLitGptsSequentialLr()
    {
        var schedule = new LearningRateSchedule { WarmupSteps = 10 };
        // LambdaLR(step/10): 0 at the first step, 0.5·peak at step 5.
        Assert.Equal(0.0, schedule.At(0, 110, 1e-3));
        Assert.Equal(5e-4, schedule.At(5, 110, 1e-3), 15);
        // CosineAnnealingLR(T_max = 100) from the milestone: peak, half at 50, cos(π/4) at 25, 0 at 100.
        Assert.Equal(1e-3, schedule.At(10, 110, 1e-3), 15);
        Assert.Equal(1e-3 * (1 + Math.Cos(Math.PI / 4)) / 2, schedule.At(35, 110, 1e-3), 15);
        Assert.Equal(5e-4, schedule.At(60, 110, 1e-3), 15);
        Assert.Equal(0.0, schedule.At(110, 110, 1e-3), 15);
        Assert.Equal(0.0, schedule.At(500, 110, 1e-3), 15);
    }

    [Fact]
    public void TheDecayEndsAtTheMinimum()
    {
        var schedule = new LearningRateSchedule { WarmupSteps = 0, MinLearningRate = 1e-4 };
        Assert.Equal(1e-3, schedule.At(0, 100, 1e-3), 15);
        Assert.Equal(5.5e-4, schedule.At(50, 100, 1e-3), 15);
        Assert.Equal(1e-4, schedule.At(100, 100, 1e-3), 15);
        var linear = schedule with { Kind = ScheduleKind.Linear, WarmupSteps = 20 };
        Assert.Equal(5e-4, linear.At(10, 100, 1e-3), 15);
        Assert.Equal(1e-4 + 9e-4 * 0.75, linear.At(40, 100, 1e-3), 15);
        Assert.Equal(1e-4, linear.At(100, 100, 1e-3), 15);
        var constant = schedule with { Kind = ScheduleKind.Constant, WarmupSteps = 4 };
        Assert.Equal(2.5e-4, constant.At(1, 100, 1e-3), 15);
        Assert.Equal(1e-3, constant.At(99, 100, 1e-3), 15);
    }

    [Fact]
    public void WarmupLongerThanTheRunIsCut()
    {
        var schedule = new LearningRateSchedule { WarmupSteps = 100 };
        Assert.Equal(0.5e-3, schedule.At(3, 6, 1e-3), 15);
        Assert.Equal(0.0, schedule.At(6, 6, 1e-3), 15);
    }

    [Fact]
    public void ClippingScalesToTheMaximumAndReportsTheNormBefore()
    {
        using var scope = NewDisposeScope();
        var a = new Parameter(zeros(2)) { grad = tensor(new[] { 3f, 0f }) };
        var b = new Parameter(zeros(1)) { grad = tensor(new[] { 4f }) };
        var frozen = new Parameter(zeros(1), requires_grad: false);
        double norm = GradientClipping.ClipByGlobalNorm([a, b, frozen], maxNorm: 1.0);
        Assert.Equal(5.0, norm, 5);
        double scale = 1.0 / (5.0 + 1e-6);
        TensorAssert.Close(tensor(new[] { 3 * scale, 0 }), a.grad!, 1e-7);
        TensorAssert.Close(tensor(new[] { 4 * scale }), b.grad!, 1e-7);
        // Below the maximum nothing changes; without a maximum only the norm is measured.
        Assert.Equal(1.0, GradientClipping.ClipByGlobalNorm([a, b], maxNorm: 2.0), 5);
        TensorAssert.Close(tensor(new[] { 3 * scale, 0 }), a.grad!, 1e-7);
        Assert.Equal(1.0, GradientClipping.ClipByGlobalNorm([a, b]), 5);
        b.grad = tensor(new[] { float.NaN });
        Assert.True(double.IsNaN(GradientClipping.ClipByGlobalNorm([a, b])));
    }
}
