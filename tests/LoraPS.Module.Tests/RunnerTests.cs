using System.Diagnostics;
using LoraPS.Runner.Hosting;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>The ./loraps script end to end, as a process; plus the runner's argument quoting.</summary>
public class RunnerTests
{
    static readonly string Script = Path.Combine(ModuleAssemblies.RepoRoot, "loraps");
    static readonly string RunnerDll = Path.Combine(ModuleAssemblies.RepoRoot, "src", "Runner", "bin", ModuleAssemblies.Configuration,
                                                    "net10.0", "LoraPS.Runner.dll");

    /// <summary>Runs ./loraps with the runner these tests were built with (no Release build from inside a test).</summary>
    static (int ExitCode, string Stdout, string Stderr) Loraps(params string[] args)
    {
        Assert.True(File.Exists(RunnerDll), $"runner not built at {RunnerDll}");
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true };
        start.ArgumentList.Add(Script);
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["LORAPS_NO_BUILD"] = "1";
        start.Environment["LORAPS_RUNNER"] = RunnerDll;
        start.Environment["COLUMNS"] = "160";
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(60)), "loraps did not finish in 60 s");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void CommandPrintsFormattedOutputAndSucceeds()
    {
        var (code, stdout, stderr) = Loraps("-Command", "Get-LoraRuntime");
        Assert.True(code == 0, stderr);
        Assert.Equal("", stderr);
        var lines = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd()).ToList();
        // The table view from LoraPS.Format.ps1xml, plain text because stdout is not a terminal.
        Assert.Matches(@"^LoraPS\s+TorchSharp\s+LibTorch\s+Threads\s+Cuda\s+Bf16Fast\s+PeakMemory\s+Cpu$", lines[0]);
        Assert.StartsWith("------", lines[1]);
        Assert.Matches(@"^\d+\.\d+\.\d+\s+\d+\.\d+\.\d+\s+\d+\.\d+\.\d+\s+\d+\s+(True|False)\s+(True|False)\s+[\d,]+ MB", lines[2]);
        Assert.DoesNotContain('\x1b', stdout);
    }

    [Fact]
    public void ErrorsGoToStderrAndFailTheRun()
    {
        var (code, stdout, stderr) = Loraps("-Command", "'before'; Write-Error 'it broke'; 'after'");
        Assert.Equal(1, code);
        Assert.Equal("before\nafter\n", stdout);
        Assert.Contains("it broke", stderr);

        (code, stdout, stderr) = Loraps("-Command", "Get-LoraRuntime -NoSuchParameter");
        Assert.Equal(1, code);
        Assert.Equal("", stdout);
        Assert.Contains("Get-LoraRuntime: A parameter cannot be found that matches parameter name 'NoSuchParameter'.", stderr);

        (code, _, stderr) = Loraps("-Command", "throw 'fatal'; 'unreached'");
        Assert.Equal(1, code);
        Assert.Contains("fatal", stderr);
    }

    [Fact]
    public void ScriptFileGetsNamedSwitchAndPositionalArguments()
    {
        string script = Path.Combine(Path.GetTempPath(), $"loraps-test-{Guid.NewGuid():N}.ps1");
        File.WriteAllText(script, """
            param([string] $Name, [switch] $Loud, [int] $Count = 1)
            "Name=$Name Loud=$Loud Count=$Count Rest=$($args -join ',')"
            Write-Verbose 'not shown'
            Write-Warning 'careful'
            if ($Count -gt 5) { throw "Count $Count is too big" }
            exit $Count
            """);
        try
        {
            var (code, stdout, stderr) = Loraps(script, "-Name", "it's me", "-Loud", "-Count", "3", "extra", "more");
            Assert.Equal(3, code); // exit N in the script is the exit code
            Assert.Equal("Name=it's me Loud=True Count=3 Rest=extra,more\n", stdout);
            Assert.Equal("WARNING: careful\n", stderr);

            (code, stdout, stderr) = Loraps(script, "-Loud:$false", "-Count:9");
            Assert.Equal(1, code);
            Assert.StartsWith("Name= Loud=False Count=9", stdout);
            // pwsh's error view: the script position and the failing line.
            Assert.Contains(script + ":5", stderr);
            Assert.Contains("Count 9 is too big", stderr);
        }
        finally { File.Delete(script); }
    }

    [Fact]
    public async Task TerminationSignalStopsThePipelineAndExits130()
    {
        if (OperatingSystem.IsWindows()) return;
        var start = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[] { Script, "-Command", "'started'; while ($true) { $i++ }" }) start.ArgumentList.Add(a);
        start.Environment["LORAPS_NO_BUILD"] = "1";
        start.Environment["LORAPS_RUNNER"] = RunnerDll;
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        Assert.Equal("started", process.StandardOutput.ReadLine());
        // The script execs dotnet, so this pid is the runner's. SIGTERM takes the same path as Ctrl+C (SIGINT),
        // which a test host may have ignored.
        using (var kill = Process.Start("kill", $"-TERM {process.Id}")) kill.WaitForExit();
        Assert.True(process.WaitForExit(TimeSpan.FromSeconds(20)), "the runner did not stop");
        Assert.Equal(130, process.ExitCode);
        Assert.Equal("", await stderr);
    }

    [Fact]
    public void MissingScriptIsAClearError()
    {
        var (code, _, stderr) = Loraps("/no/such/script.ps1");
        Assert.Equal(1, code);
        Assert.Contains("'/no/such/script.ps1' does not exist", stderr);
    }

    [Fact]
    public void CompatFunctionsCoverCommonUtilityCommands()
    {
        var (code, stdout, stderr) = Loraps("-Command",
            "$r = Get-LoraRuntime; ($r | ConvertTo-Json -Compress | ConvertFrom-Json).LoraPSVersion -eq $r.LoraPSVersion; " +
            "(1..10 | Measure-Object -Sum).Sum; 3,1,2 | Sort-Object | Select-Object -Last 2; " +
            "Write-Host 'host line'; Test-Path (Join-Path $PSHOME 'nope')");
        Assert.True(code == 0, stderr);
        Assert.Equal("True\n55\n2\n3\nhost line\nFalse\n", stdout);
    }

    [Theory]
    [InlineData(new[] { "a b", "-Name", "x'y" }, "& '/s.ps1' 'a b' -Name 'x''y'")]
    [InlineData(new[] { "-Flag:$false", "-N:3", "-5", "--x" }, "& '/s.ps1' -Flag:$false -N:'3' '-5' '--x'")]
    public void ScriptArgumentsKeepNamesBareAndQuoteValues(string[] args, string expected) =>
        Assert.Equal(expected, LoraSession.ScriptInvocation("/s.ps1", args));
}
