using System.Management.Automation;
using LoraPS.Runner.Hosting;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>The runner's host in-process, writing into strings instead of the console.</summary>
public class RunnerHostTests
{
    static (Terminal Terminal, StringWriter Out, StringWriter Err) Strings(bool errIsTerminal = false)
    {
        var output = new StringWriter { NewLine = "\n" };
        var error = new StringWriter { NewLine = "\n" };
        return (new Terminal(output, error, outIsTerminal: false, errorIsTerminal: errIsTerminal), output, error);
    }

    [Fact]
    public void SessionRoutesStreamsAndDefinesCompatOnlyForMissingCommands()
    {
        var (terminal, output, error) = Strings();
        using var session = LoraSession.Open(new RunnerHost(terminal), ModuleAssemblies.Manifest);
        Assert.Contains("Write-Host", session.CompatFunctions);
        Assert.Contains("Select-Object", session.CompatFunctions);
        Assert.DoesNotContain("ForEach-Object", session.CompatFunctions); // a real Core cmdlet stays

        int code = session.RunCommand("'out'; Write-Warning 'warn'; Write-Verbose 'quiet'; Write-Verbose 'loud' -Verbose; Write-Host 'host'");
        Assert.Equal(0, code);
        Assert.Equal("out\nhost\n", output.ToString());
        Assert.Equal("WARNING: warn\nVERBOSE: loud\n", error.ToString());

        output.GetStringBuilder().Clear();
        error.GetStringBuilder().Clear();
        Assert.Equal(1, session.RunCommand("Write-Error 'bad item'; 'went on'"));
        Assert.Equal("went on\n", output.ToString());
        Assert.Contains("bad item", error.ToString());
        // A later clean command succeeds again: failure is per command.
        Assert.Equal(0, session.RunCommand("'fine'"));
        Assert.Equal(4, session.RunCommand("exit 4"));
    }

    [Fact]
    public void RedirectedProgressPrintsSparseLines()
    {
        var (terminal, _, error) = Strings();
        var renderer = new ProgressRenderer(terminal, clock: () => 0);
        for (int pct = 0; pct <= 100; pct++)
            renderer.Render(1, new ProgressRecord(7, "Training", $"step {pct}") { PercentComplete = pct });
        renderer.Render(2, new ProgressRecord(7, "Training", "x") { RecordType = ProgressRecordType.Completed });
        var lines = error.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // One line per 10% (0, 10, ..., 100) and the completion; the clock never advances, so no status lines.
        Assert.Equal(12, lines.Length);
        Assert.Equal("Training: step 0 0%", lines[0]);
        Assert.Equal("Training: step 50 50%", lines[5]);
        Assert.Equal("Training: done", lines[^1]);
    }

    [Fact]
    public void TerminalProgressIsOneLineRedrawnInPlace()
    {
        var (terminal, _, error) = Strings(errIsTerminal: true);
        var renderer = new ProgressRenderer(terminal);
        renderer.Render(1, new ProgressRecord(1, "Load", "shard 1") { PercentComplete = 50 });
        Assert.True(renderer.LineShown);
        renderer.Render(1, new ProgressRecord(1, "Load", "shard 1") { RecordType = ProgressRecordType.Completed });
        Assert.False(renderer.LineShown);
        Assert.Equal("\r\x1b[2KLoad: shard 1 [##########          ] 50%\r\x1b[2K", error.ToString());
        Assert.Equal("Load: a very long status…", ProgressRenderer.Format(new ProgressRecord(1, "Load", "a very long status line"), 26));
    }
}
