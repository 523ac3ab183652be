using System.Management.Automation;
using System.Management.Automation.Runspaces;
using LoraPS.Module.Infrastructure;
using Xunit;

namespace LoraPS.Module.Tests;

/// <summary>LoraCmdlet's error mapping, paths, progress and cancellation, through a real runspace.</summary>
public sealed class InfrastructureTests : IDisposable
{
    readonly Runspace _runspace = TestRunspaces.Create();
    readonly string _dir = Directory.CreateTempSubdirectory("loraps-paths-").FullName;

    public void Dispose()
    {
        _runspace.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Runs a script. In a script a cmdlet's terminating error ends only its statement and lands in the
    /// error stream, so "Error" is the first error written (or the one thrown out of the script).</summary>
    (List<PSObject> Output, List<ErrorRecord> Errors, ErrorRecord? Error, PowerShell Ps) Run(string script)
    {
        var ps = PowerShell.Create(_runspace);
        ps.AddScript(script);
        try
        {
            var output = ps.Invoke().ToList();
            return (output, ps.Streams.Error.ToList(), ps.Streams.Error.FirstOrDefault(), ps);
        }
        catch (RuntimeException e)
        {
            return (new List<PSObject>(), ps.Streams.Error.ToList(), e.ErrorRecord, ps);
        }
    }

    [Theory]
    [InlineData("FileNotFound", ErrorIds.FileNotFound, ErrorCategory.ObjectNotFound, "model.safetensors")]
    [InlineData("InvalidData", ErrorIds.InvalidData, ErrorCategory.InvalidData, "hidden_size")]
    [InlineData("Argument", ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument, "Rank must be positive")]
    [InlineData("Canceled", ErrorIds.OperationCanceled, ErrorCategory.OperationStopped, "Timed out")]
    [InlineData("NotSupported", ErrorIds.NotSupported, ErrorCategory.NotImplemented, "mamba")]
    [InlineData("Invalid", ErrorIds.InvalidOperation, ErrorCategory.InvalidOperation, "released")]
    [InlineData("Wrapped", ErrorIds.InvalidData, ErrorCategory.InvalidData, "inner data problem")]
    [InlineData("Other", ErrorIds.Unexpected, ErrorCategory.NotSpecified, "something odd")]
    public void EngineExceptionsBecomeTerminatingErrorsWithIdAndCategory(string kind, string id, ErrorCategory category, string message)
    {
        var (_, _, error, _) = Run($"Test-LoraEngineError -Kind {kind}");
        Assert.NotNull(error);
        Assert.Equal($"{id},{typeof(TestEngineErrorCommand).FullName}", error!.FullyQualifiedErrorId);
        Assert.Equal(category, error.CategoryInfo.Category);
        Assert.Contains(message, error.Exception.Message);
        Assert.Equal(kind, error.TargetObject);
    }

    [Fact]
    public void ErrorsCanBeCaughtByIdInScripts()
    {
        var (output, errors, _, _) = Run("try { Test-LoraEngineError InvalidData } catch { if ($_.FullyQualifiedErrorId -like 'InvalidData,*') { 'caught' } }");
        Assert.Empty(errors);
        Assert.Equal("caught", Assert.Single(output).ToString());
    }

    [Fact]
    public void OneBadItemIsANonTerminatingErrorAndTheRestGoOn()
    {
        var (output, errors, _, _) = Run("1, -2, 3 | Test-LoraItems");
        Assert.Equal(new[] { 1, 3 }, output.Select(o => (int)o.BaseObject));
        var error = Assert.Single(errors);
        Assert.StartsWith(ErrorIds.InvalidArgument + ",", error.FullyQualifiedErrorId);
        Assert.Equal(-2, error.TargetObject);
    }

    [Fact]
    public void TerminatingErrorStopsTheCmdletForTheRestOfThePipeline()
    {
        var (output, errors, _, _) = Run("'FileNotFound', 'InvalidData' | ForEach-Object { $_ } | Test-LoraEngineError; 'next statement'");
        Assert.Single(errors);
        Assert.Equal("next statement", Assert.Single(output).ToString());
        var (_, _, thrown, _) = Run("$ErrorActionPreference = 'Stop'; Test-LoraEngineError InvalidData; 'unreached'");
        Assert.StartsWith(ErrorIds.InvalidData + ",", thrown!.FullyQualifiedErrorId);
    }

    [Fact]
    public void MissingPathIsPathNotFound()
    {
        var (_, _, error, _) = Run($"Test-LoraPath -Path '{_dir}/nothing*.bin'");
        Assert.StartsWith(ErrorIds.PathNotFound + ",", error!.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.ObjectNotFound, error.CategoryInfo.Category);
        (_, _, error, _) = Run($"Test-LoraPath -LiteralPath '{_dir}/missing.bin'");
        Assert.StartsWith(ErrorIds.PathNotFound + ",", error!.FullyQualifiedErrorId);
        Assert.Contains("missing.bin", error.Exception.Message);
    }

    [Fact]
    public void RelativePathsFollowThePowerShellLocationNotTheProcess()
    {
        File.WriteAllText(Path.Combine(_dir, "a.json"), "{}");
        var (output, errors, _, _) = Run($"$ExecutionContext.SessionState.Path.SetLocation('{_dir}') | Out-Null; Test-LoraPath -Path a.json; Test-LoraPath -Unresolved -LiteralPath new/out.bin");
        Assert.Empty(errors);
        Assert.Equal(Path.Combine(_dir, "a.json"), output[0].ToString());
        Assert.Equal(Path.Combine(_dir, "new", "out.bin"), output[1].ToString());
    }

    [Fact]
    public void WildcardsExpandOnPathButNotOnLiteralPath()
    {
        foreach (var name in new[] { "x1.bin", "x2.bin", "[odd].bin" }) File.WriteAllText(Path.Combine(_dir, name), "");
        var (output, _, _, _) = Run($"Test-LoraPath -Path '{_dir}/x*.bin'");
        Assert.Equal(new[] { "x1.bin", "x2.bin" }, output.Select(o => Path.GetFileName(o.ToString())).Order());
        (output, _, _, _) = Run($"Test-LoraPath -LiteralPath '{_dir}/[odd].bin'");
        Assert.Equal("[odd].bin", Path.GetFileName(Assert.Single(output).ToString()));
        var (_, _, error, _) = Run($"Test-LoraPath -Single -Path '{_dir}/x*.bin'");
        Assert.StartsWith(ErrorIds.PathAmbiguous + ",", error!.FullyQualifiedErrorId);
        Assert.Equal(ErrorCategory.InvalidArgument, error.CategoryInfo.Category);
    }

    [Fact]
    public void NonFileSystemPathsAreRefused()
    {
        var (_, _, error, _) = Run("Test-LoraPath -Path 'Variable:/PSHOME'");
        Assert.StartsWith(ErrorIds.PathNotFileSystem + ",", error!.FullyQualifiedErrorId);
        Assert.Contains("not the file system", error.Exception.Message);
    }

    [Fact]
    public void ProgressIsThrottledAndCompleted()
    {
        var (output, errors, _, ps) = Run("Test-LoraProgress -Count 100 -IntervalMs 3600000");
        Assert.Empty(errors);
        var records = ps.Streams.Progress.ToList();
        // First update, the last (throttled) value flushed at the end, and the Completed record.
        Assert.Equal(3, records.Count);
        Assert.Equal(3, (int)Assert.Single(output).BaseObject);
        Assert.Equal("item 1", records[0].StatusDescription);
        Assert.Equal("item 100", records[1].StatusDescription);
        Assert.Equal(100, records[1].PercentComplete);
        Assert.Equal(ProgressRecordType.Completed, records[2].RecordType);
        Assert.All(records, r => Assert.Equal("Counting", r.Activity));
    }

    [Fact]
    public void UnthrottledProgressWritesEveryUpdate()
    {
        var (_, _, _, ps) = Run("Test-LoraProgress -Count 10 -IntervalMs 0");
        Assert.Equal(11, ps.Streams.Progress.Count);
    }

    [Fact]
    public void ProgressFromAnotherThreadIsRefusedClearly()
    {
        var (_, _, error, _) = Run("Test-LoraProgress -FromOtherThread");
        Assert.StartsWith(ErrorIds.InvalidOperation + ",", error!.FullyQualifiedErrorId);
        Assert.Contains("pipeline thread", error.Exception.Message);
    }

    [Fact]
    public void StoppingThePipelineCancelsTheEngineToken()
    {
        TestCancellationCommand.Started.Reset();
        TestCancellationCommand.SawCancellation = false;
        using var ps = PowerShell.Create(_runspace);
        ps.AddCommand("Test-LoraCancellation");
        var async = ps.BeginInvoke();
        Assert.True(TestCancellationCommand.Started.Wait(TimeSpan.FromSeconds(10)));
        ps.Stop();
        Assert.Throws<PipelineStoppedException>(() => ps.EndInvoke(async));
        Assert.True(TestCancellationCommand.SawCancellation);
        Assert.Equal(PSInvocationState.Stopped, ps.InvocationStateInfo.State);
    }

    [Fact]
    public void ClassifyMapsTheDocumentedExceptionTypes()
    {
        Assert.Equal((ErrorIds.FileNotFound, ErrorCategory.ObjectNotFound), ErrorRecords.Classify(new DirectoryNotFoundException()));
        Assert.Equal((ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument), ErrorRecords.Classify(new ArgumentNullException("x")));
        Assert.Equal((ErrorIds.PermissionDenied, ErrorCategory.PermissionDenied), ErrorRecords.Classify(new UnauthorizedAccessException()));
        Assert.Equal((ErrorIds.IOError, ErrorCategory.ReadError), ErrorRecords.Classify(new IOException()));
        Assert.Equal((ErrorIds.OperationCanceled, ErrorCategory.OperationStopped), ErrorRecords.Classify(new TaskCanceledException()));
        var created = ErrorRecords.Create(ErrorIds.PathNotFound, ErrorCategory.ObjectNotFound, "msg", "target");
        Assert.Equal("msg", created.Exception.Message);
        Assert.Equal("target", created.TargetObject);
    }
}
