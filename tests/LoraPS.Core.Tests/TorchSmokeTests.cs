using TorchSharp;
using Xunit;

namespace LoraPS.Tests;

public class TorchSmokeTests
{
    [Fact]
    public void NativeBackendLoadsAndComputes()
    {
        using var scope = torch.NewDisposeScope();
        var a = torch.ones(2, 3);
        var b = torch.ones(3, 4);
        var c = a.matmul(b);
        Assert.Equal(new long[] { 2, 4 }, c.shape);
        Assert.Equal(3f, c[1, 2].item<float>());
    }
}
