using LoraPS.Runtime;
using Xunit;

namespace LoraPS.Module.Tests;

[Collection(ModuleCollection.Name)]
public class RuntimeTests(RunspaceFixture fixture)
{
    [Fact]
    public void GetLoraRuntimeReturnsOneTypedRecord()
    {
        var (output, errors) = fixture.Invoke("Get-LoraRuntime");
        Assert.Empty(errors);
        var info = Assert.IsType<RuntimeInfo>(Assert.Single(output).BaseObject);
        Assert.Equal(fixture.Module.Version.ToString(3), info.LoraPSVersion);
        Assert.Matches(@"^\d+\.\d+\.\d+", info.TorchSharpVersion);
        Assert.Matches(@"^\d+\.\d+\.\d+$", info.LibTorchVersion!);
        Assert.InRange(info.TorchThreads, 1, 4096);
        Assert.InRange(info.TorchInteropThreads, 1, 4096);
        Assert.Equal(Environment.ProcessorCount, info.LogicalProcessors);
        Assert.True(info.PeakMemoryBytes >= info.WorkingSetBytes / 2 && info.PeakMemoryBytes > 10 << 20,
                    $"peak {info.PeakMemoryBytes}, working set {info.WorkingSetBytes}");
        Assert.Equal(ModuleAssemblies.ModuleFolder.TrimEnd('/'), info.ModuleFolder!.TrimEnd('/'));
        Assert.Equal(info.CpuFeatures.Contains("avx512_bf16") || info.CpuFeatures.Contains("amx_bf16"), info.Bf16FastPath);
        Assert.False(info.CudaAvailable && !OperatingSystem.IsLinux() && !OperatingSystem.IsWindows());
    }

    [Fact]
    public void GetLoraRuntimeDeclaresItsOutputType()
    {
        var (output, _) = fixture.Invoke("(Get-Command Get-LoraRuntime).OutputType.Type.FullName");
        Assert.Equal(typeof(RuntimeInfo).FullName, Assert.Single(output).ToString());
    }

    [Fact]
    public void TorchComputesFromTheModuleFolder()
    {
        // TorchSharp and libtorch come from out/LoraPS, without the libraries the layout leaves out.
        var (output, errors) = fixture.Invoke(
            "Get-LoraRuntime | Out-Null; $t = [TorchSharp.torch]::ones([long[]]@(2, 3)); $s = $t.sum().item[float](); $t.Dispose(); $s; " +
            "[TorchSharp.torch].Assembly.Location");
        Assert.Empty(errors);
        Assert.Equal(6f, (float)output[0].BaseObject);
        Assert.StartsWith(ModuleAssemblies.ModuleFolder, output[1].ToString());
    }

    [Fact]
    public void ParsesX86CpuInfo()
    {
        const string cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\n" +
                               "flags\t\t: fpu sse avx avx2 fma avx512f avx512bw avx512_bf16 amx_tile amx_bf16 amx_int8\n\n" +
                               "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu\n";
        var cpu = CpuFeatureSet.ParseCpuInfo(cpuinfo);
        Assert.Equal("Intel(R) Xeon(R) Platinum 8480+", cpu.Model);
        Assert.Equal(new[] { "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8" }, cpu.Features);
        Assert.True(cpu.Bf16FastPath);
    }

    [Fact]
    public void ParsesArmCpuInfoAndNoBf16WithoutTheFlags()
    {
        var arm = CpuFeatureSet.ParseCpuInfo("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve\nCPU implementer\t: 0x41\n");
        Assert.Equal(new[] { "asimd", "sve" }, arm.Features);
        Assert.False(arm.Bf16FastPath);
        var zen3 = CpuFeatureSet.ParseCpuInfo("model name\t: AMD EPYC 7763\nflags\t: avx avx2 fma f16c\n");
        Assert.False(zen3.Bf16FastPath);
    }

    [Fact]
    public void ParsesProcStatusMemory()
    {
        var (peak, current) = RuntimeInspector.ParseProcStatus("Name:\tdotnet\nVmPeak:\t 9999 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n");
        Assert.Equal(204800L * 1024, peak);
        Assert.Equal(102400L * 1024, current);
        Assert.Equal((0L, 0L), RuntimeInspector.ParseProcStatus("Name:\tx\n"));
    }
}
